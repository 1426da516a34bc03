"""Fixtures for the media plane: real aiortc peers on loopback, an in-process SFU."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aioice.ice
import pytest

from media.local import LocalSfu

from .browser import EventLog


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice never gathers 127.0.0.1 (RFC 8445 forbids loopback host candidates) and has no
    option for it; the tests want exactly one candidate per peer, on loopback, so patch it."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
async def sfu(events: EventLog) -> AsyncIterator[LocalSfu]:
    local = LocalSfu(events, [], ice_timeout=10.0)
    events.sfu = local
    yield local
    await local.close()
