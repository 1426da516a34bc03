"""``media-quality``: a LinkQuality event from the media plane reaches the one participant it
is about, as the contract says, and nobody else; the event survives the media worker's pipe;
a malformed one is refused where it is made, or dropped before the wire."""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from media.events import MAX_QUALITY_TRACKS, LinkQuality
from media.worker import _EVENT_TYPES
from server.app import SIGNALLING
from server.contract import EventContract
from server.errors import Invalid

from .test_signalling import _next_session


async def _room(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> tuple[int, Any, Any]:
    sid = await _next_session(server, auth, ids["board_id"])
    chair, surgeon = await connect("chair"), await connect("surgeon")
    assert (await chair.call("join", {"session_id": sid}))["you"] == "u3"
    assert (await surgeon.call("join", {"session_id": sid}))["you"] == "u6"
    return sid, chair, surgeon


async def _quiet_since(peer: Any, speaker: Any, text: str) -> None:
    """Wait until ``peer`` hears a chat message ``speaker`` sends now: anything the server sent
    ``peer`` before it has arrived by then (one socket keeps its order)."""
    assert (await speaker.call("chat", {"text": text}))["ok"]
    await peer.wait_for("chat-message", lambda m: m["text"] == text)


async def test_media_quality_reaches_only_its_participant_and_fits_the_contract(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, chair, surgeon = await _room(connect, server, auth, ids)
    tracks = (("u3-video-0", "reduced"), ("u3-audio-0", "full"), ("u3-screen-1", "paused"))
    server.app[SIGNALLING].on_media_event(LinkQuality(str(sid), "u6", 850, tracks))
    quality = await surgeon.wait_for("media-quality")
    assert quality == {
        "estimate_kbps": 850,
        "tracks": {"u3-video-0": "reduced", "u3-audio-0": "full", "u3-screen-1": "paused"},
    }
    EventContract().check("media-quality", quality)
    await _quiet_since(chair, surgeon, "after the surgeon's link quality")
    assert chair.seen("media-quality") == []
    # The chair's own reaches the chair, and only the chair.
    server.app[SIGNALLING].on_media_event(LinkQuality(str(sid), "u3", 12_000, ()))
    assert await chair.wait_for("media-quality") == {"estimate_kbps": 12_000, "tracks": {}}
    await _quiet_since(surgeon, chair, "after the chair's link quality")
    assert len(surgeon.seen("media-quality")) == 1


async def test_media_quality_the_contract_refuses_is_dropped_and_later_ones_still_arrive(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, chair, surgeon = await _room(connect, server, auth, ids)
    signalling = server.app[SIGNALLING]
    # A track id that is not a down offer's msid track id.
    signalling.on_media_event(LinkQuality(str(sid), "u6", 500, (("../etc", "full"),)))
    signalling.on_media_event(LinkQuality(str(sid), "u6", 400, (("u3-video-2", "paused"),)))
    await surgeon.wait_for("media-quality", lambda q: q["estimate_kbps"] == 400)
    await _quiet_since(surgeon, chair, "after both")
    assert [q["estimate_kbps"] for q in surgeon.seen("media-quality")] == [400]


async def test_media_quality_for_someone_not_in_the_session_goes_nowhere(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, chair, surgeon = await _room(connect, server, auth, ids)
    server.app[SIGNALLING].on_media_event(LinkQuality(str(sid), "u999", 300, ()))
    server.app[SIGNALLING].on_media_event(LinkQuality(str(sid + 1000), "u6", 300, ()))
    await _quiet_since(surgeon, chair, "after the strays")
    await _quiet_since(chair, surgeon, "and back")
    assert chair.seen("media-quality") == [] and surgeon.seen("media-quality") == []


def test_link_quality_crosses_the_media_workers_pipe_and_pickles_unchanged() -> None:
    event = LinkQuality("7", "u6", 1200, (("u3-video-0", "full"), ("u4-video-1", "paused")))
    # As media/worker.py writes an event and the parent reads it back.
    line = json.dumps({"event": type(event).__name__, **dataclasses.asdict(event)})
    message = json.loads(line)
    back = _EVENT_TYPES[message.pop("event")](**message)
    assert back == event and hash(back) == hash(event)
    assert pickle.loads(pickle.dumps(event)) == event


@pytest.mark.parametrize(
    ("estimate", "tracks", "field"),
    [
        (-1, (), "estimate_kbps"),
        (1.5, (), "estimate_kbps"),
        (True, (), "estimate_kbps"),
        (100, (("u3-video-0", "blurry"),), "tracks.u3-video-0"),
        (100, (("u3-video-0", "full"), ("u3-video-0", "paused")), "tracks"),
        (100, tuple((f"u{i}-video-0", "full") for i in range(MAX_QUALITY_TRACKS + 1)), "tracks"),
    ],
)
def test_malformed_link_quality_is_refused_naming_the_field(
    estimate: Any, tracks: Any, field: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        LinkQuality("7", "u6", estimate, tracks)


def test_the_contract_bounds_media_quality_like_the_event() -> None:
    contract = EventContract()
    many = {f"u{i}-video-0": "full" for i in range(MAX_QUALITY_TRACKS + 1)}
    for bad, field in [
        ({"estimate_kbps": 1, "tracks": many}, "tracks"),
        ({"estimate_kbps": 1, "tracks": {"u3-video-0": "blurry"}}, "tracks.u3-video-0"),
        ({"estimate_kbps": -5, "tracks": {}}, "estimate_kbps"),
        ({"estimate_kbps": 1}, "tracks"),
    ]:
        with pytest.raises(Invalid, match=rf"media-quality: {field}: "):
            contract.check("media-quality", bad)
