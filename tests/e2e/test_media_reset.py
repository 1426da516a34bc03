"""The media worker dies under two board members in real Chromium: the server starts a new one,
tells the room, and both browsers publish afresh on new peer connections by themselves, their
sockets never dropped."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from .conftest import Server
from .test_room import Member, _join, _next_session_with_ready_case, _wait_playing

RESET_LIMIT_MS = 10_000


def _media_worker(server: Server) -> int:
    """The pid of the server's media worker: a ``media.worker`` whose parent serves our data."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            parent_command = Path(f"/proc/{parent}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"media.worker" in command and str(server.data_dir).encode() in parent_command:
            return int(entry.name)
    raise AssertionError("no media worker runs for this server")


@pytest.fixture(scope="module")
def pair(server: Server, browser: Browser) -> Iterator[dict[str, Member]]:
    session_id, _ = _next_session_with_ready_case(server)
    members = {name: _join(browser, server, name, session_id) for name in ("chair", "surgeon")}
    yield members
    for member in members.values():
        member.context.close()


def test_both_browsers_publish_again_on_fresh_connections_after_the_worker_is_killed(
    server: Server, pair: dict[str, Member]
) -> None:
    pages = [member.page for member in pair.values()]
    for page in pages:
        _wait_playing(page, count=1)
        page.evaluate("() => { window.__before = window.__eboard.live.up; }")
    joins = [int(page.evaluate("window.__eboard.live.joins")) for page in pages]
    dead = _media_worker(server)
    killed_at = [float(page.evaluate("performance.now()")) for page in pages]
    os.kill(dead, signal.SIGKILL)
    for page, at in zip(pages, killed_at, strict=True):
        # Frames from the dead worker stop at once: five new ones come through the new one.
        page.wait_for_function("() => window.__eboard.live.up !== window.__before", timeout=10_000)
        back_at = _wait_playing(page, count=1, frames=5, timeout=RESET_LIMIT_MS)
        print(f"\nworker killed → fresh up connection, remote video playing: {back_at - at:.0f} ms")
        assert back_at - at < RESET_LIMIT_MS
    assert _media_worker(server) != dead
    # The sockets stayed up: nobody joined again.
    assert [int(page.evaluate("window.__eboard.live.joins")) for page in pages] == joins
