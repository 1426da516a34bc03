"""Rooms as people come, go, come back and fail, seen through real aiortc browsers."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiortc import AudioStreamTrack

from media.events import DownOffer, MediaJoined, MediaLeft
from media.local import LocalSfu
from media.sfu import RELAY_MAX_BYTES, MediaError

from .browser import BrowserPeer, EventLog, SmallCamera, track_id


def sections(sdp: str) -> dict[str, str]:
    """msid track id → direction of each m-section of an offer."""
    found = {}
    for block in sdp.split("m=")[1:]:
        msid = re.search(r"a=msid:\S+ (\S+)", block)
        direction = re.search(r"a=(sendonly|recvonly|sendrecv|inactive)", block)
        if msid and direction:
            found[msid.group(1)] = direction.group(1)
    return found


async def test_leaver_tracks_are_dropped_from_the_others_down_connections(
    sfu: LocalSfu, events: EventLog
) -> None:
    a, b, c = (BrowserPeer(events, "board", n) for n in ("a", "b", "c"))
    try:
        for browser in (a, b, c):
            await browser.publish()
        await a.wait_frames([track_id("c", "video"), track_id("c", "audio")], 5)
        await b.wait_frames([track_id("c", "video")], 5)
        answered = {x.name: x.answers for x in (a, b)}

        await sfu.leave("board", "c")

        assert events.of(MediaLeft, "c")[-1].reason == "left"
        for browser in (a, b):
            offer = events.of(DownOffer, browser.name)[-1].sdp
            assert sections(offer)[track_id("c", "video")] == "inactive"
            assert sections(offer)[track_id("c", "audio")] == "inactive"
            other = "b" if browser is a else "a"
            assert sections(offer)[track_id(other, "video")] == "sendonly"
        for browser in (a, b):
            await browser.wait_answers(answered[browser.name] + 1)
        stats = await sfu.stats("board")
        assert (stats.participants, stats.up_tracks, stats.down_tracks) == (2, 4, 4)

        before = a.frames[track_id("c", "video")], a.frames[track_id("b", "video")]
        await asyncio.sleep(0.5)
        assert a.frames[track_id("c", "video")] == before[0]  # nothing more from c
        assert a.frames[track_id("b", "video")] > before[1]  # b still flows
        await sfu.leave("board", "c")  # leaving twice is harmless
    finally:
        for browser in (a, b, c):
            await browser.close()


async def test_second_publish_replaces_the_first(sfu: LocalSfu, events: EventLog) -> None:
    a, b = BrowserPeer(events, "board", "a"), BrowserPeer(events, "board", "b")
    a2: BrowserPeer | None = None
    try:
        await a.publish()
        await b.publish()
        await b.wait_frames([track_id("a", "video")], 5)

        # The same participant again, e.g. after a network change: the server has not
        # noticed the old connections are dead, and the newest publish wins.
        a2 = BrowserPeer(events, "board", "a")
        await a2.publish()
        await a.close()  # closing the replaced connections changes nothing

        await b.wait_frames([track_id("a", "video", 1), track_id("a", "audio", 1)], 5)
        await a2.wait_frames([track_id("b", "video"), track_id("b", "audio")], 5)
        assert sections(events.of(DownOffer, "b")[-1].sdp)[track_id("a", "video")] == "inactive"
        assert events.of(MediaLeft, "a") == []  # replaced, not gone
        assert len(events.of(MediaJoined, "a")) == 2
        stats = await sfu.stats("board")
        assert (stats.participants, stats.up_tracks, stats.down_tracks) == (2, 4, 4)
    finally:
        for browser in (a, b, a2):
            if browser is not None:
                await browser.close()


async def test_participant_who_never_completes_ice_times_out(events: EventLog) -> None:
    sfu = LocalSfu(events, [], ice_timeout=1.0)
    events.sfu = sfu
    a = BrowserPeer(events, "board", "a")
    try:
        a.up.addTrack(AudioStreamTrack())
        await a.up.setLocalDescription(await a.up.createOffer())
        offer = "".join(
            line
            for line in a.up.localDescription.sdp.splitlines(keepends=True)
            if not line.startswith(("a=candidate", "a=end-of-candidates"))
        )
        await sfu.publish("board", "a", offer)

        left = await events.wait_for(MediaLeft, "a", seconds=5)

        assert left.reason == "timeout"
        assert (await sfu.stats("board")).participants == 0
    finally:
        await a.close()
        await sfu.close()


async def test_candidate_for_unknown_mid_is_refused(sfu: LocalSfu, events: EventLog) -> None:
    a = BrowserPeer(events, "board", "a")
    try:
        await a.publish()
        line = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"

        with pytest.raises(MediaError, match="unknown mid '7'"):
            await sfu.candidate("board", "a", "up", {"candidate": line, "sdpMid": "7"})
        with pytest.raises(MediaError, match="no down connection"):
            await sfu.candidate("board", "a", "down", {"candidate": line, "sdpMid": "0"})
        with pytest.raises(MediaError, match="unknown participant"):
            await sfu.candidate("board", "z", "up", {"candidate": line, "sdpMid": "0"})
        await sfu.candidate(
            "board", "a", "up", {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}
        )
        await sfu.candidate("board", "a", "up", {"candidate": "", "sdpMid": "0"})
    finally:
        await a.close()


async def test_down_answer_without_an_offer_is_refused(sfu: LocalSfu, events: EventLog) -> None:
    a, b = BrowserPeer(events, "board", "a"), BrowserPeer(events, "board", "b")
    try:
        await a.publish()
        with pytest.raises(MediaError, match="no down connection"):
            await sfu.answer_down("board", "a", "v=0\r\n")
        await b.publish()
        await b.wait_frames([track_id("a", "video")], 1)
        with pytest.raises(MediaError, match="no down offer is waiting"):
            await sfu.answer_down("board", "b", b.down.localDescription.sdp)  # type: ignore
    finally:
        for browser in (a, b):
            await browser.close()


async def test_presenter_sharing_a_screen_republishes_and_subscribers_get_camera_and_screen(
    sfu: LocalSfu, events: EventLog
) -> None:
    a, b = BrowserPeer(events, "board", "a"), BrowserPeer(events, "board", "b")
    a2: BrowserPeer | None = None
    try:
        await a.publish()
        await b.publish()
        await b.wait_frames([track_id("a", "video")], 5)
        await sfu.set_presenter("board", "a")

        # Starting to share is a fresh publish: microphone, camera, then the screen.
        a2 = BrowserPeer(events, "board", "a")
        await a2.publish(AudioStreamTrack(), SmallCamera(), SmallCamera())
        await a.close()

        screen, camera = track_id("a", "screen", 1), track_id("a", "video", 1)
        await b.wait_frames([screen, camera, track_id("a", "audio", 1)], 5)
        offered = sections(events.of(DownOffer, "b")[-1].sdp)
        assert offered[screen] == offered[camera] == "sendonly"
        assert offered[track_id("a", "video")] == "inactive"
        assert (await sfu.stats("board")).up_tracks == 5
    finally:
        for browser in (a, b, a2):
            if browser is not None:
                await browser.close()


async def test_screen_of_someone_not_presenting_is_not_forwarded(
    sfu: LocalSfu, events: EventLog
) -> None:
    a, b = BrowserPeer(events, "board", "a"), BrowserPeer(events, "board", "b")
    try:
        await a.publish()
        await b.publish(AudioStreamTrack(), SmallCamera(), SmallCamera())

        await a.wait_frames([track_id("b", "video"), track_id("b", "audio")], 10)

        assert sections(events.of(DownOffer, "a")[-1].sdp)[track_id("b", "screen")] == "sendonly"
        assert a.frames[track_id("b", "screen")] == 0
        await sfu.set_presenter("board", "b")
        await a.wait_frames([track_id("b", "screen")], 5)
    finally:
        for browser in (a, b):
            await browser.close()


async def test_offer_with_more_than_microphone_camera_and_screen_is_refused(
    sfu: LocalSfu, events: EventLog
) -> None:
    a, b = BrowserPeer(events, "board", "a"), BrowserPeer(events, "board", "b")
    try:
        with pytest.raises(MediaError, match="3 video sections; .* at most 2 \\(video, screen\\)"):
            await a.publish(SmallCamera(), SmallCamera(), SmallCamera())
        with pytest.raises(MediaError, match="2 audio sections"):
            await b.publish(AudioStreamTrack(), AudioStreamTrack())
        assert (await sfu.stats("board")).participants == 0
    finally:
        for browser in (a, b):
            await browser.close()


async def test_participant_who_only_watches_receives_the_others_video_and_audio(
    sfu: LocalSfu, events: EventLog
) -> None:
    a, b = BrowserPeer(events, "board", "a"), BrowserPeer(events, "board", "b")
    watcher = BrowserPeer(events, "board", "w")
    try:
        await a.publish()
        await watcher.watch()  # no camera, no microphone: send-only sections without a track
        await b.publish()

        wanted = [track_id(p, name) for p in ("a", "b") for name in ("video", "audio")]
        await watcher.wait_frames(wanted, 10)

        await events.wait_for(MediaJoined, "w")  # attendance counts the watcher too
        # The others are offered the watcher's tracks, which never carry a frame.
        offered = sections(events.of(DownOffer, "a")[-1].sdp)
        assert offered[track_id("w", "video")] == offered[track_id("w", "audio")] == "sendonly"
        await a.wait_frames([track_id("b", "video")], 10)
        assert a.frames[track_id("w", "video")] == a.frames[track_id("w", "audio")] == 0
    finally:
        for browser in (a, b, watcher):
            await browser.close()


async def test_a_newcomer_is_offered_its_down_connection_before_the_others_renegotiate(
    sfu: LocalSfu, events: EventLog
) -> None:
    """The one who just published waits for its first picture; the others already see the
    board and only gain a tile. Building an offer takes tens of milliseconds at N = 12, so the
    newcomer's comes first, then the others' in the order they arrived."""
    peers = [BrowserPeer(events, "board", name) for name in ("a", "b", "c", "d")]
    try:
        for peer in peers[:3]:
            await peer.publish()
        before = len(events.events)
        await peers[3].publish()
        offered = [e.participant for e in events.events[before:] if isinstance(e, DownOffer)]
        assert offered == ["d", "a", "b", "c"]
    finally:
        for peer in peers:
            await peer.close()


async def test_relayed_messages_reach_everyone_but_the_skipped_over_the_data_channel(
    sfu: LocalSfu, events: EventLog
) -> None:
    """The view's fast path: the server opens one data channel on each down connection and
    relays text on it. The one skipped (the presenter) gets nothing; a message over the bound
    is not sent; a channel the browser opens is closed, and the server's stays open."""
    a, b, c = (BrowserPeer(events, "board", name) for name in ("a", "b", "c"))
    try:
        for peer in (a, b, c):
            await peer.publish()
        for peer in (a, b, c):
            await peer.wait_frames([track_id("b" if peer is a else "a", "video")], 3)
        # Open once the browser acknowledged it; until then relay sends nothing.
        await asyncio.gather(*(peer.wait_channel_open() for peer in (a, b, c)))
        assert [ch.label for ch in b.channels] == ["eboard"]
        assert not b.channels[0].ordered and b.channels[0].maxRetransmits == 0

        sfu.relay("board", '{"n": 1}', skip="a")
        sfu.relay("board", "x" * (RELAY_MAX_BYTES + 1))
        sfu.relay("board", '{"n": 2}')
        await b.wait_relayed(2)
        await c.wait_relayed(2)
        await a.wait_relayed(1)
        assert sorted(b.relayed) == sorted(c.relayed) == ['{"n": 1}', '{"n": 2}']
        assert a.relayed == ['{"n": 2}']

        assert b.down is not None
        mine = b.down.createDataChannel("mine")
        closed = asyncio.Event()
        mine.on("close", closed.set)
        async with asyncio.timeout(10):
            await closed.wait()
        sfu.relay("board", '{"n": 3}', skip="a")
        await b.wait_relayed(3)
        sfu.relay("nowhere", "{}")  # an unknown room: nothing to do
    finally:
        for peer in (a, b, c):
            await peer.close()
