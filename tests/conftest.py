"""Shared fixtures: the real app on a temp data dir, seeded once and copied per test."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from server.app import create_app
from server.config import Settings
from server.demo import DEMO_USERS, seed
from server.models import User
from server.services import SERVICES, Services

from .peers import Peer

DEMO_USERNAMES = [d.username for d in DEMO_USERS]


@dataclass(frozen=True)
class DemoTemplate:
    path: Path
    ids: dict[str, int]


async def _seed_template(path: Path) -> dict[str, int]:
    services = Services.build(Settings(data_dir=path))
    try:
        await services.db.migrate()
        # A small CT keeps the per-session template quick; the demo itself has 120 × 512².
        return await seed(services, slices=4, size=64)
    finally:
        await services.db.close()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> DemoTemplate:
    """Seeding hashes ten argon2 passwords: done once, then the data dir is copied per test."""
    path = tmp_path_factory.mktemp("demo-template")
    ids = asyncio.run(_seed_template(path))
    return DemoTemplate(path, ids)


@pytest.fixture
def data_dir(tmp_path: Path, demo_template: DemoTemplate) -> Path:
    target = tmp_path / "data"
    shutil.copytree(demo_template.path, target)
    (target / "keys.json").chmod(0o600)
    return target


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, client_dir=data_dir / "no-client")


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    app: web.Application,
) -> TestClient[Any, Any]:
    return await aiohttp_client(app)


@pytest.fixture
def ids(demo_template: DemoTemplate) -> dict[str, int]:
    return demo_template.ids


@pytest.fixture
async def auth(client: TestClient[Any, Any]) -> dict[str, dict[str, str]]:
    """Authorization headers per demo username, from tokens the app itself signs."""
    services = client.app[SERVICES]
    out: dict[str, dict[str, str]] = {}
    async with services.db.read() as session:
        for user in await session.exec(select(User)):
            token, _ = services.tokens.issue("access", str(user.id), 3600, role=user.role)
            out[user.username] = {"Authorization": f"Bearer {token}"}
    return out


@pytest.fixture
async def services(app: web.Application) -> AsyncIterator[Services]:
    services = app[SERVICES]
    yield services
    if not app.frozen:
        # No client started the app, so its cleanup will not close the database: close it here,
        # before the test's loop does, or aiosqlite's threads answer a closed loop.
        await services.db.close()


@pytest.fixture
async def server(
    settings: Settings, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> TestServer:
    fast = Settings(**{**settings.__dict__, "reconnect_grace_seconds": 0.5})
    app: web.Application = create_app(fast)
    return await aiohttp_server(app)


@pytest.fixture
async def connect(
    server: TestServer, auth: dict[str, dict[str, str]]
) -> AsyncIterator[Callable[[str], Awaitable[Peer]]]:
    peers: list[Peer] = []

    async def make(username: str) -> Peer:
        client = socketio.AsyncClient(reconnection=False)
        peer = Peer(client)

        @client.on("*", namespace="/board")  # type: ignore[misc]
        async def record(event: str, data: Any = None) -> None:
            peer.events.append((event, data))

        token = auth[username]["Authorization"].split(" ", 1)[1]
        await client.connect(
            str(server.make_url("/")),
            namespaces=["/board"],
            auth={"token": token},
            transports=["websocket"],
            # python-socketio waits 1 s for the namespace by default; a loaded 2-core machine
            # took longer once ("Unexpected connection error" in a full-suite run).
            wait_timeout=10,
        )
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        if peer.client.connected:
            await peer.client.disconnect()
