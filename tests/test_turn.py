"""Through a real coturn: participants restricted to relayed candidates still meet in the SFU,
with the short-lived credentials the server hands out at join."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aioice.ice
import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy, RTCIceTransportPolicy

from server.app import create_app
from server.config import Settings
from tests.media.browser import SmallCamera
from tests.test_live_media import Participant, next_session

SECRET = "coturn-test-secret"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


@pytest.fixture(scope="module")
def coturn() -> Iterator[str]:
    binary = shutil.which("turnserver")
    assert binary, "coturn is installed by `make test`"
    port = _free_udp_port()
    workdir = Path(tempfile.mkdtemp(prefix="eboard-turn-"))
    proc = subprocess.Popen(
        [
            binary,
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=eboard.test",
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--min-port=49200",
            "--max-port=49400",
            "--simple-log",
            f"--log-file={workdir / 'turn.log'}",
            f"--pidfile={workdir / 'turn.pid'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            log = workdir / "turn.log"
            if log.exists() and "listener opened" in log.read_text(errors="replace").lower():
                break
            if proc.poll() is not None:
                raise RuntimeError("turnserver exited at start")
            subprocess.run(["sleep", "0.05"], check=True)
        yield f"turn:127.0.0.1:{port}?transport=udp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def server(
    settings: Settings, coturn: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> AsyncIterator[TestServer]:
    turned = Settings(**{**settings.__dict__, "turn_urls": (coturn,), "turn_secret": SECRET})
    yield await aiohttp_server(create_app(turned))


def _relay_only(ice_servers: list[dict[str, object]]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(
                urls=s["urls"],
                username=s["username"],  # type: ignore[arg-type]
                credential=s["credential"],
            )
            for s in ice_servers
        ],
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )


async def test_relay_only_participants_connect_through_coturn_and_receive_video(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await next_session(server, auth, ids["board_id"])
    chair, surgeon = Participant("chair"), Participant("surgeon")
    try:
        for p in (chair, surgeon):
            await p.connect(str(server.make_url("/")), auth[p.name]["Authorization"].split()[1])
            joined = await p.call("join", {"session_id": sid})
            servers = joined["ice_servers"]
            turn = [s for s in servers if any(u.startswith("turn:") for u in s["urls"])]
            assert len(turn) == 1 and turn[0]["username"].endswith(f":u{3 if p is chair else 6}")
            p.config = _relay_only(turn)
            p.up = RTCPeerConnection(p.config)
        await chair.publish()
        await surgeon.publish()
        assert "typ relay" in chair.up.localDescription.sdp
        assert "typ host" not in chair.up.localDescription.sdp
        deadline = asyncio.get_running_loop().time() + 30
        while not all(p.frames["video"] >= 10 for p in (chair, surgeon)):
            assert asyncio.get_running_loop().time() < deadline, "no video through TURN"
            await asyncio.sleep(0.1)
        assert chair.down is not None and "typ relay" in chair.down.localDescription.sdp
    finally:
        await chair.close()
        await surgeon.close()


async def test_wrong_turn_secret_gets_no_relay_candidate(coturn: str) -> None:
    from media import turn_credentials

    username, credential = turn_credentials("not-the-secret", "u9", 600)
    pc = RTCPeerConnection(
        _relay_only([{"urls": [coturn], "username": username, "credential": credential}])
    )
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    assert "typ relay" not in pc.localDescription.sdp
    await pc.close()


async def test_the_room_learns_its_ice_servers_before_joining_and_publishes_with_the_join(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    """`GET /api/sessions/{id}/ice-servers` gives a member what the join would (their own
    TURN credentials), so the room offers its up connection with relay candidates while its
    socket connects and publishes it with the join. Only to those who may join now."""
    sid = await next_session(server, auth, ids["board_id"])
    path = f"/api/sessions/{sid}/ice-servers"
    async with aiohttp.ClientSession() as http:

        async def get(who: str, where: str = path) -> tuple[int, dict[str, Any]]:
            async with http.get(server.make_url(where), headers=auth[who]) as resp:
                return resp.status, await resp.json()

        status, body = await get("chair")
        assert status == 200, body
        turn = [s for s in body["ice_servers"] if any(u.startswith("turn:") for u in s["urls"])]
        assert len(turn) == 1 and turn[0]["username"].endswith(":u3"), body
        status, body = await get("records")
        assert status == 403 and "records may not get the STUN" in body["detail"], body
        status, body = await get("admin")  # no member of the board
        assert status == 403 and "not invited" in body["detail"], body
        status, body = await get("chair", "/api/sessions/999999/ice-servers")
        assert status == 404 and body["errors"][0]["field"] == "session_id", body
        status, body = await get("chair", "/api/sessions/abc/ice-servers")
        assert status == 404, body

    chair, surgeon = Participant("chair"), Participant("surgeon")
    try:
        chair.config = _relay_only(turn)
        chair.up = RTCPeerConnection(chair.config)
        chair.up.addTrack(SmallCamera())
        await chair.up.setLocalDescription(await chair.up.createOffer())
        assert "typ relay" in chair.up.localDescription.sdp
        await chair.connect(str(server.make_url("/")), auth["chair"]["Authorization"].split()[1])
        offer = {"sdp": chair.up.localDescription.sdp, "type": "offer"}
        joined = await chair.call("join", {"session_id": sid, "offer": offer})
        assert joined["ok"] and "answer" in joined, joined
        await chair.up.setRemoteDescription(RTCSessionDescription(joined["answer"], "answer"))
        await surgeon.connect(
            str(server.make_url("/")), auth["surgeon"]["Authorization"].split()[1]
        )
        assert (await surgeon.call("join", {"session_id": sid}))["ok"]
        await surgeon.publish()
        deadline = asyncio.get_running_loop().time() + 30
        while surgeon.frames["video"] < 10:
            assert asyncio.get_running_loop().time() < deadline, "no video through TURN"
            await asyncio.sleep(0.1)
    finally:
        await chair.close()
        await surgeon.close()
