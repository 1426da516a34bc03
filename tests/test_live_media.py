"""A live session end to end below the browser: real socket.io clients carry the signalling,
real aiortc peers send and receive media through the SFU (in-process and in its worker
process), and attendance is written from the media joins."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import aioice.ice
import pytest
import socketio
from aiohttp.test_utils import TestServer
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from sqlmodel import col, select

from media.downlink import Downlink
from media.worker import WorkerSfu
from server.app import SFU, create_app
from server.config import Settings
from server.models import Attendance
from server.services import SERVICES
from tests.media.browser import SmallCamera

CONFIG = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The test's own peers gather loopback candidates only (see tests/media/conftest.py).
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


class Participant:
    """A participant's browser played by aiortc, signalling over a real socket.io client."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.config = CONFIG
        self.up = RTCPeerConnection(CONFIG)
        self.down: RTCPeerConnection | None = None
        self.frames: Counter[str] = Counter()
        self.streams: set[str] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.offers: asyncio.Queue[str] = asyncio.Queue()
        self.sio.on("down-offer", self._on_offer, namespace="/board")
        self.relayed: list[dict[str, Any]] = []  # what came on the down data channel
        self.channel_open = False

    async def _on_offer(self, data: dict[str, Any]) -> None:
        await self.offers.put(data["sdp"])

    async def connect(self, url: str, token: str) -> None:
        await self.sio.connect(
            url, namespaces=["/board"], auth={"token": token}, transports=["websocket"]
        )
        self.tasks.append(asyncio.ensure_future(self._answer()))

    async def call(self, event: str, data: Any) -> Any:
        return await self.sio.call(event, data, namespace="/board", timeout=20)

    async def publish(self) -> None:
        self.up.addTrack(SmallCamera())
        self.up.addTrack(AudioStreamTrack())
        await self.up.setLocalDescription(await self.up.createOffer())
        reply = await self.call("publish", {"sdp": self.up.localDescription.sdp, "type": "offer"})
        assert reply["ok"], reply
        await self.up.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def _answer(self) -> None:
        while True:
            offer = await self.offers.get()
            if self.down is None:
                self.down = RTCPeerConnection(self.config)
                self.down.on("track", self._consume)
                self.down.on("datachannel", self._channel)
            await self.down.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await self.down.setLocalDescription(await self.down.createAnswer())
            reply = await self.call(
                "answer", {"sdp": self.down.localDescription.sdp, "type": "answer"}
            )
            assert reply["ok"], reply

    def _channel(self, channel: RTCDataChannel) -> None:
        self.channel_open = True
        channel.on("message", lambda message: self.relayed.append(json.loads(message)))

    def _consume(self, track: MediaStreamTrack) -> None:
        self.tasks.append(asyncio.ensure_future(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames[f"{track.kind}"] += 1
        except MediaStreamError:
            pass

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.up.close()
        if self.down is not None:
            await self.down.close()
        if self.sio.connected:
            await self.sio.disconnect()


async def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def next_session(server: TestServer, auth: dict[str, dict[str, str]], board: int) -> int:
    """The id of the board's next session, as the coordinator lists it."""
    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.make_url(f"/api/boards/{board}/sessions"), headers=auth["coordinator"]
        ) as resp:
            return int((await resp.json())["items"][0]["id"])


@pytest.fixture(params=["in-process", "worker"])
async def server(
    request: pytest.FixtureRequest,
    settings: Settings,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[TestServer]:
    if request.param == "worker":
        app = create_app(settings, sfu_factory=WorkerSfu)
    else:
        app = create_app(settings)
    yield await aiohttp_server(app)


async def _spans(server: TestServer, sid: int) -> list[Attendance]:
    """Attendance of session ``sid`` (the demo's past session has its own)."""
    query = select(Attendance).where(Attendance.session_id == sid).order_by(col(Attendance.id))
    async with server.app[SERVICES].db.read() as session:
        return list(await session.exec(query))


async def test_two_participants_see_each_other_and_attendance_follows_media(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    url = str(server.make_url("/"))
    sid = await next_session(server, auth, ids["board_id"])
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url(f"/api/sessions/{sid}/agenda"),
            headers=auth["coordinator"],
            json={"case_id": ids["ready_case"], "timebox_minutes": 10},
        ) as resp:
            item = (await resp.json())["id"]
    chair, surgeon = Participant("chair"), Participant("surgeon")
    try:
        for p in (chair, surgeon):
            await p.connect(url, auth[p.name]["Authorization"].split(" ", 1)[1])
            joined = await p.call("join", {"session_id": sid})
            assert joined["ok"], joined
        await chair.publish()
        await surgeon.publish()
        await _wait(
            lambda: all(
                p.frames["video"] >= 10 and p.frames["audio"] >= 10 for p in (chair, surgeon)
            ),
            30,
            "media both ways",
        )

        spans = await _spans(server, sid)
        assert sorted(s.user_id for s in spans) == [3, 6]
        assert all(s.left_at is None and s.agenda_item_id is None for s in spans)
        assert {s.specialty for s in spans} == {"medical_oncology", "surgery"}

        assert (await chair.call("agenda", {"item_id": item}))["ok"]
        spans = await _spans(server, sid)
        open_spans = [s for s in spans if s.left_at is None]
        assert sorted((s.user_id, s.agenda_item_id) for s in open_spans) == [(3, item), (6, item)]

        assert (await surgeon.call("leave", {}))["ok"]
        spans = await _spans(server, sid)
        assert [s for s in spans if s.user_id == 6 and s.left_at is None] == []
        assert [s.user_id for s in spans if s.left_at is None] == [3]
    finally:
        await chair.close()
        await surgeon.close()


async def test_malformed_sdp_is_refused_and_others_are_unaffected(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    url = str(server.make_url("/"))
    sid = await next_session(server, auth, ids["board_id"])
    chair, surgeon = Participant("chair"), Participant("surgeon")
    try:
        for p in (chair, surgeon):
            await p.connect(url, auth[p.name]["Authorization"].split(" ", 1)[1])
            assert (await p.call("join", {"session_id": sid}))["ok"]
        await chair.publish()
        bad = await surgeon.call("publish", {"sdp": "v=0\r\nthis is not sdp\r\n", "type": "offer"})
        assert bad["ok"] is False and bad["error"]["field"] == "sdp"
        no_codec = surgeon.up
        no_codec.addTrack(AudioStreamTrack())
        await no_codec.setLocalDescription(await no_codec.createOffer())
        stripped = "\r\n".join(
            line.replace("opus/48000/2", "speex/16000") if line.startswith("a=rtpmap") else line
            for line in no_codec.localDescription.sdp.split("\r\n")
        )
        refused = await surgeon.call("publish", {"sdp": stripped, "type": "offer"})
        assert refused["ok"] is False and "codec" in refused["error"]["message"].lower()
        assert (await chair.call("chat", {"text": "still fine"}))["ok"]
    finally:
        await chair.close()
        await surgeon.close()


async def test_candidate_for_an_unknown_mid_is_refused(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await next_session(server, auth, ids["board_id"])
    chair = Participant("chair")
    try:
        await chair.connect(str(server.make_url("/")), auth["chair"]["Authorization"].split()[1])
        assert (await chair.call("join", {"session_id": sid}))["ok"]
        await chair.publish()
        reply = await chair.call(
            "candidate",
            {
                "direction": "up",
                "candidate": {
                    "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
                    "sdpMid": "99",
                    "sdpMLineIndex": 7,
                },
            },
        )
        assert reply["ok"] is False and "99" in reply["error"]["message"]
    finally:
        await chair.close()


async def test_participant_who_never_completes_ice_is_timed_out_and_removed(
    settings: Settings,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
) -> None:
    from media import LocalSfu

    app = create_app(settings, sfu_factory=lambda sink, ice: LocalSfu(sink, ice, ice_timeout=1.5))
    server = await aiohttp_server(app)
    sid = await next_session(server, auth, ids["board_id"])
    chair, surgeon = Participant("chair"), Participant("surgeon")
    left: list[Any] = []
    errors: list[Any] = []
    chair.sio.on("participant-left", left.append, namespace="/board")
    surgeon.sio.on("error", errors.append, namespace="/board")
    try:
        for p in (chair, surgeon):
            await p.connect(str(server.make_url("/")), auth[p.name]["Authorization"].split()[1])
            assert (await p.call("join", {"session_id": sid}))["ok"]
        # The surgeon offers but its browser goes away before ICE can complete.
        surgeon.up.addTrack(SmallCamera())
        await surgeon.up.setLocalDescription(await surgeon.up.createOffer())
        offer = surgeon.up.localDescription.sdp
        await surgeon.up.close()
        assert (await surgeon.call("publish", {"sdp": offer, "type": "offer"}))["ok"]
        await _wait(lambda: bool(left), 10, "the timed-out participant to be removed")
        assert left == [{"id": "u6", "reason": "media timeout"}]
        assert errors and "timeout" in errors[0]["message"]
        reply = await surgeon.call("chat", {"text": "am I still here?"})
        assert reply["ok"] is False
        again = await surgeon.call("join", {"session_id": sid})  # the same socket may rejoin
        assert again["ok"] is True and again["resumed"] is False
    finally:
        await chair.close()
        await surgeon.close()


async def test_socket_reconnect_with_media_still_up_resumes_as_connected(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await next_session(server, auth, ids["board_id"])
    chair, surgeon = Participant("chair"), Participant("surgeon")
    updates: list[Any] = []
    chair.sio.on("participant", updates.append, namespace="/board")
    try:
        for p in (chair, surgeon):
            await p.connect(str(server.make_url("/")), auth[p.name]["Authorization"].split()[1])
            assert (await p.call("join", {"session_id": sid}))["ok"]
        await chair.publish()
        await surgeon.publish()
        await _wait(lambda: chair.frames["video"] >= 5, 30, "video at the chair")
        # A new socket for the surgeon (the old one dropped); its media connections live on.
        again = socketio.AsyncClient(reconnection=False)
        await again.connect(
            str(server.make_url("/")),
            namespaces=["/board"],
            auth={"token": auth["surgeon"]["Authorization"].split()[1]},
            transports=["websocket"],
        )
        rejoined = await again.call("join", {"session_id": sid}, namespace="/board", timeout=10)
        assert rejoined["resumed"] is True
        me = next(p for p in rejoined["snapshot"]["participants"] if p["id"] == "u6")
        assert me["connection"] == "connected"
        before = chair.frames["video"]
        await _wait(lambda: chair.frames["video"] > before + 5, 10, "video still flowing")
        await again.disconnect()
    finally:
        await chair.close()
        await surgeon.close()


async def test_a_join_carries_the_offer_and_is_answered_at_once(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    """The room's first join carries its up connection's offer (one round trip less to the
    first picture): the acknowledgement carries the SFU's answer and media flows from it. An
    offer the contract refuses refuses the join, naming the field, and changes nothing; one the
    SFU refuses goes unanswered, the join stands, and publishing it says why."""
    url = str(server.make_url("/"))
    sid = await next_session(server, auth, ids["board_id"])
    chair, surgeon = Participant("chair"), Participant("surgeon")
    try:
        await chair.connect(url, auth["chair"]["Authorization"].split(" ", 1)[1])
        chair.up.addTrack(SmallCamera())
        chair.up.addTrack(AudioStreamTrack())
        await chair.up.setLocalDescription(await chair.up.createOffer())
        offer = {"sdp": chair.up.localDescription.sdp, "type": "offer"}
        joined = await chair.call("join", {"session_id": sid, "offer": offer})
        assert joined["ok"] and joined["admitted"], joined
        await chair.up.setRemoteDescription(RTCSessionDescription(joined["answer"], "answer"))

        await surgeon.connect(url, auth["surgeon"]["Authorization"].split(" ", 1)[1])
        short = {"session_id": sid, "offer": {"sdp": "v=0", "type": "offer"}}
        refused = await surgeon.call("join", short)
        assert refused["ok"] is False and refused["error"]["field"] == "offer.sdp", refused
        # Not joined by the refused join: the surgeon is nobody in the session yet.
        assert (await surgeon.call("chat", {"text": "hello?"}))["ok"] is False
        garbled = {"sdp": "v=0\r\nthis is not sdp\r\n", "type": "offer"}
        joined = await surgeon.call("join", {"session_id": sid, "offer": garbled})
        assert joined["ok"] and joined["admitted"] and "answer" not in joined, joined
        bad = await surgeon.call("publish", garbled)
        assert bad["ok"] is False and bad["error"]["field"] == "sdp", bad
        await surgeon.publish()
        await _wait(
            lambda: all(
                p.frames["video"] >= 10 and p.frames["audio"] >= 10 for p in (chair, surgeon)
            ),
            30,
            "media both ways, the chair's published with its join",
        )
    finally:
        await chair.close()
        await surgeon.close()


async def test_an_offer_waits_in_the_lobby_with_its_owner(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    """An external expert's join waits in the lobby: the offer it carries is not published
    (no answer, nothing in the SFU) until the chair admits them; then the server publishes it
    and sends the answer (`up-answer`), and the expert's media flows without a `publish`. An
    offer the SFU refuses gets a null answer (the client then publishes, and learns why)."""
    url = str(server.make_url("/"))
    sid = await next_session(server, auth, ids["board_id"])
    chair, external = Participant("chair"), Participant("external")
    answers: asyncio.Queue[str | None] = asyncio.Queue()
    external.sio.on("up-answer", lambda data: answers.put_nowait(data["sdp"]), namespace="/board")
    try:
        await chair.connect(url, auth["chair"]["Authorization"].split(" ", 1)[1])
        assert (await chair.call("join", {"session_id": sid}))["ok"]
        await chair.publish()
        await external.connect(url, auth["external"]["Authorization"].split(" ", 1)[1])
        external.up.addTrack(SmallCamera())
        external.up.addTrack(AudioStreamTrack())
        await external.up.setLocalDescription(await external.up.createOffer())
        offer = {"sdp": external.up.localDescription.sdp, "type": "offer"}
        joined = await external.call("join", {"session_id": sid, "offer": offer})
        assert joined["ok"] and joined["admitted"] is False and "answer" not in joined, joined
        assert (await server.app[SFU].stats(str(sid))).participants == 1  # the chair alone
        assert (await chair.call("admit", {"participant": joined["you"]}))["ok"]
        async with asyncio.timeout(20):
            answer = await answers.get()
        assert answer is not None
        await external.up.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await _wait(
            lambda: chair.frames["video"] >= 10 and external.frames["video"] >= 10,
            30,
            "media both ways, the expert's published on admission",
        )

        # Again with an offer the SFU cannot read: admitted, told to publish it themselves.
        assert (await external.call("leave", {}))["ok"]
        garbled = {"sdp": "v=0\r\nthis is not sdp\r\n", "type": "offer"}
        joined = await external.call("join", {"session_id": sid, "offer": garbled})
        assert joined["ok"] and joined["admitted"] is False, joined
        assert (await chair.call("admit", {"participant": joined["you"]}))["ok"]
        async with asyncio.timeout(20):
            assert await answers.get() is None
    finally:
        await chair.close()
        await external.close()


async def test_view_updates_also_come_on_the_down_data_channel(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    """Each accepted patch goes to the followers twice: on the socket and on their down
    connection's data channel (which a lost packet does not hold up), both copies numbered
    with the state they apply to. The presenter gets neither."""
    url = str(server.make_url("/"))
    sid = await next_session(server, auth, ids["board_id"])
    peers = [Participant(name) for name in ("chair", "radiologist", "surgeon")]
    chair, presenter, surgeon = peers
    try:
        for p in peers:
            await p.connect(url, auth[p.name]["Authorization"].split(" ", 1)[1])
            assert (await p.call("join", {"session_id": sid}))["ok"]
            await p.publish()
        await _wait(lambda: all(p.channel_open for p in peers), 30, "the data channels")
        assert (await chair.call("presenter", {"participant": "u4"}))["ok"]
        socket: list[dict[str, Any]] = []
        surgeon.sio.on("view-update", socket.append, namespace="/board")

        for seq, layout in ((1, "1x2"), (2, "2x2")):
            reply = await presenter.call("view", {"seq": seq, "patch": {"layout": layout}})
            assert reply == {"ok": True, "seq": seq}
        for follower in (chair, surgeon):
            await _wait(lambda f=follower: len(f.relayed) == 2, 20, "two relayed updates")
            assert sorted(
                (m["event"], m["data"]["seq"], m["data"]["after"], m["data"]["patch"])
                for m in follower.relayed
            ) == [
                ("view-update", 1, 0, {"layout": "1x2"}),
                ("view-update", 2, 1, {"layout": "2x2"}),
            ]
            assert {m["data"]["by"] for m in follower.relayed} == {"u4"}
        await _wait(lambda: len(socket) == 2, 20, "the socket's copies")
        assert [(u["seq"], u["after"]) for u in socket] == [(1, 0), (2, 1)]
        # A refused patch is relayed nowhere.
        refused = await presenter.call("view", {"seq": 3, "patch": {"active": 7}})
        assert not refused["ok"]
        assert (await presenter.call("view", {"seq": 4, "patch": {"layout": "1x1"}}))["ok"]
        await _wait(lambda: len(surgeon.relayed) == 3, 20, "the next relayed update")
        assert surgeon.relayed[-1]["data"]["after"] == 2
        assert presenter.relayed == []
    finally:
        for p in peers:
            await p.close()


async def test_a_viewer_waiting_for_an_image_holds_back_its_own_tiles_only(
    server: TestServer,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``images-first``: the chair's viewer waits for an image over a thin link, so the chair's
    down link is told the surgeon's tile is paused while the presenter's stays; the surgeon's
    own tiles do not change. Malformed requests name the field and change nothing; before
    joining, refused. These aiortc peers send no transport-cc (no estimate, as on a LAN): in
    process the test gives the links a thin estimate; in the worker, where it cannot, it checks
    that the worker takes the requests."""
    thin = request.node.callspec.params["server"] == "in-process"
    if thin:
        monkeypatch.setattr(Downlink, "estimate", property(lambda _: 1_000_000))
    url = str(server.make_url("/"))
    sid = await next_session(server, auth, ids["board_id"])
    peers = [Participant(name) for name in ("chair", "radiologist", "surgeon")]
    chair, _, surgeon = peers
    told: dict[str, list[dict[str, str]]] = {p.name: [] for p in peers}
    try:
        for p in peers:
            await p.connect(url, auth[p.name]["Authorization"].split(" ", 1)[1])
            p.sio.on(
                "media-quality",
                lambda q, n=p.name: told[n].append(q["tracks"]),
                namespace="/board",
            )
        refused = await chair.call("images-first", {"on": True})
        assert refused["error"] == {
            "event": "images-first",
            "field": None,
            "message": "join a session first",
        }
        for p in peers:
            assert (await p.call("join", {"session_id": sid}))["ok"]
            await p.publish()
        assert (await chair.call("presenter", {"participant": "u4"}))["ok"]
        await _wait(lambda: any(p.frames["video"] >= 2 for p in peers), 30, "video")

        def latest(name: str, track_prefix: str) -> str | None:
            for tracks in reversed(told[name]):
                for track, state in tracks.items():
                    if track.startswith(track_prefix):
                        return state
            return None

        await _wait(lambda: latest("chair", "u6-video") in ("full", "reduced"), 30, "tiles")
        for data, field in (({"on": "yes"}, "on"), ({}, "on"), ({"on": True, "x": 1}, "x")):
            reply = await chair.call("images-first", data)
            assert reply["ok"] is False and reply["error"]["field"] == field, reply
        assert latest("chair", "u6-video") in ("full", "reduced")

        assert await chair.call("images-first", {"on": True}) == {"ok": True}
        if not thin:
            # The worker took both requests (a missing or failing call there is an error
            # reply); that no estimate holds nothing back is tests/media/test_last_n.py's.
            assert await chair.call("images-first", {"on": False}) == {"ok": True}
            assert latest("chair", "u6-video") in ("full", "reduced")
            return
        await _wait(lambda: latest("chair", "u6-video") == "paused", 20, "the tile paused")
        assert latest("chair", "u4-video") in ("full", "reduced")  # the presenter's: the stage
        assert latest("surgeon", "u3-video") in ("full", "reduced", None)
        assert all(state != "paused" for tracks in told["surgeon"] for state in tracks.values())

        assert await chair.call("images-first", {"on": False}) == {"ok": True}
        await _wait(lambda: latest("chair", "u6-video") != "paused", 20, "the tile back")
    finally:
        for p in peers:
            await p.close()
