"""Imaging fixtures: the app on a real port whose public URL is that port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import Settings


@pytest.fixture
async def server(
    settings: Settings, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> AsyncIterator[TestServer]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Links in responses come from the configured public URL, never from the Host header.
    public = Settings(**{**settings.__dict__, "public_url": f"http://127.0.0.1:{port}"})
    yield await aiohttp_server(create_app(public), port=port)
