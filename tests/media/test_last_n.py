"""Last-N video: each subscriber gets video from the N most relevant others plus the presenter,
and audio from everyone, without renegotiating."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import AudioStreamTrack

from media import room as room_module
from media.downlink import Downlink
from media.events import LinkQuality
from media.local import LocalSfu
from media.room import SMALL_TILES, tile_layer

from .browser import BrowserPeer, EventLog, SmallCamera, track_id


@pytest.fixture
async def last_one(events: EventLog) -> AsyncIterator[LocalSfu]:
    """An SFU that forwards each subscriber video from one other participant (plus the
    presenter)."""
    sfu = LocalSfu(events, [], ice_timeout=10.0, last_n=1)
    events.sfu = sfu
    yield sfu
    await sfu.close()


async def _still(
    browser: BrowserPeer, track: str, seconds: float = 0.6, within: float = 10.0
) -> bool:
    """Whether ``track`` stops: no frame for ``seconds``, some time in the next ``within``.
    Frames already on their way when forwarding pauses may still land (a loaded machine
    delivers them late); a track still forwarded at 30 fps never goes quiet that long."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        before = browser.frames[track]
        await asyncio.sleep(seconds)
        if browser.frames[track] == before:
            return True
    return False


async def test_last_n_limits_video_but_not_audio_and_the_presenter_always_shows(
    events: EventLog,
) -> None:
    sfu = LocalSfu(events, [], ice_timeout=10.0, last_n=1)
    events.sfu = sfu
    a, b, c = (BrowserPeer(events, "board", n) for n in ("a", "b", "c"))
    try:
        for browser in (a, b, c):
            await browser.publish()
        # Nobody has spoken: the newest arrival ranks first (someone who just joined is seen,
        # not queued behind everyone forever). c sees b's video only.
        await c.wait_frames([track_id("b", "video"), track_id("a", "audio")], 5)
        assert await _still(c, track_id("a", "video"))
        answers = c.answers

        await sfu.set_presenter("board", "a")
        await c.wait_frames([track_id("a", "video")], c.frames[track_id("a", "video")] + 5)
        await c.wait_frames([track_id("b", "video")], c.frames[track_id("b", "video")] + 5)
        assert c.answers == answers  # switched by pausing forwarding, not by renegotiating

        await sfu.set_presenter("board", None)
        assert await _still(c, track_id("a", "video"))
        stats = await sfu.stats("board")
        assert stats.extra["keyframe_requests"] >= 1
    finally:
        for browser in (a, b, c):
            await browser.close()
        await sfu.close()


async def test_last_n_never_pauses_the_presenters_screen(
    last_one: LocalSfu, events: EventLog
) -> None:
    sfu = last_one
    a, b, c = (BrowserPeer(events, "board", n) for n in ("a", "b", "c"))
    try:
        await sfu.set_presenter("board", "b")
        await a.publish()
        await b.publish(AudioStreamTrack(), SmallCamera(), SmallCamera())
        await c.publish()
        screen = track_id("b", "screen")
        # c's one Last-N place goes to a (the only other); b's camera and screen come because
        # b presents, outside the cap.
        await c.wait_frames([track_id("a", "video"), track_id("b", "video"), screen], 5)
        await a.wait_frames([track_id("b", "video"), screen], 5)

        for _ in range(3):  # whoever Last-N ranks first, the screen keeps coming
            before = c.frames[screen]
            await asyncio.sleep(0.5)
            assert c.frames[screen] > before

        # A screen is the presenter's alone: handed over, b's screen stops for everyone.
        await sfu.set_presenter("board", "a")
        await asyncio.sleep(0.2)  # what was on its way when forwarding stopped
        assert await _still(c, screen)
        assert await _still(a, screen, seconds=0.1)
    finally:
        for browser in (a, b, c):
            await browser.close()


async def test_camera_that_never_sends_takes_no_last_n_place(
    last_one: LocalSfu, events: EventLog
) -> None:
    watcher, a, b = (BrowserPeer(events, "board", n) for n in ("w", "a", "b"))
    try:
        # The earliest arrival has no camera; ranked by arrival alone, it would take the one
        # place, and a and b would see no video of each other.
        await watcher.watch()
        await a.publish()
        await b.publish()

        await b.wait_frames([track_id("a", "video")], 5)
        # b's camera had sent nothing when b arrived; its first packet ranks it above w.
        await a.wait_frames([track_id("b", "video")], 5)
        await watcher.wait_frames([track_id("b", "video")], 5)  # the newest arrival
    finally:
        for browser in (watcher, a, b):
            await browser.close()


# The ranking alone (media.room.rank): who Last-N and the allocator serve first.


async def test_the_pacer_knows_which_video_to_shed_last(sfu: LocalSfu, events: EventLog) -> None:
    """Each allocation tells the subscriber's pacer the rank of its video down-tracks: the
    presenter's first, so a link that falls behind sheds the others' tiles before the stage."""
    a, b, c = (BrowserPeer(events, "board", n) for n in ("a", "b", "c"))
    try:
        for peer in (a, b, c):
            await peer.publish()
        await sfu.set_presenter("board", "b")
        room = sfu._rooms["board"]
        link = room.participant("a").down.link  # type: ignore[union-attr]
        async with asyncio.timeout(10):
            while True:
                order = sorted(link.priorities.items(), key=lambda kv: kv[1])
                names = [down.track_id for down, _ in order]  # type: ignore[attr-defined]
                if len(names) == 2 and names[0] == track_id("b", "video"):
                    break
                await asyncio.sleep(0.1)
        assert names == [track_id("b", "video"), track_id("c", "video")]
    finally:
        for peer in (a, b, c):
            await peer.close()


def test_rank_orders_presenter_speaker_recent_speakers_then_newest_arrivals() -> None:
    from media.room import rank

    people = [("a", 1, True), ("b", 2, True), ("c", 3, True), ("d", 4, True), ("w", 5, False)]
    ranks = rank(people, "a", "b", {"b": 99.0, "c": 95.0, "d": 90.0}, 100.0)
    assert sorted(ranks, key=ranks.__getitem__) == ["a", "b", "c", "d", "w"]
    # Nobody has spoken: the newest arrival first; a camera that never sent last.
    ranks = rank(people, None, None, {}, 100.0)
    assert sorted(ranks, key=ranks.__getitem__) == ["d", "c", "b", "a", "w"]


def test_someone_who_spoke_long_ago_does_not_outrank_a_newcomer_for_ever() -> None:
    from media.room import RECENT_SPEAKER_S, rank

    people = [("old", 1, True), ("talker", 2, True), ("expert", 3, True)]
    spoke = {"old": 0.0, "talker": 10.0}
    # Within the window both speakers rank above the silent expert who joined last ...
    ranks = rank(people, None, None, spoke, 10.0 + RECENT_SPEAKER_S / 2)
    assert sorted(ranks, key=ranks.__getitem__) == ["talker", "old", "expert"]
    # ... past it, who spoke long ago falls back to their place by arrival.
    ranks = rank(people, None, None, spoke, RECENT_SPEAKER_S + 5.0)
    assert sorted(ranks, key=ranks.__getitem__) == ["talker", "expert", "old"]
    # The one speaking now ranks right after the presenter, however long they speak.
    ranks = rank(people, "expert", "old", spoke, 1000.0)
    assert sorted(ranks, key=ranks.__getitem__) == ["expert", "old", "talker"]


async def _quality(events: EventLog, participant: str, wanted: dict[str, str]) -> None:
    """Wait until ``participant`` was last told the tile states ``wanted`` (others may be there)."""
    async with asyncio.timeout(15):
        while True:
            told = events.of(LinkQuality, participant)
            states = dict(told[-1].tracks) if told else {}
            if all(states.get(track) == state for track, state in wanted.items()):
                return
            events.changed.clear()
            await events.changed.wait()


async def test_a_viewer_waiting_for_an_image_gets_the_stage_alone_for_a_while(
    sfu: LocalSfu, events: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """images_first: while a's viewer waits for an image over a thin link, a's down link
    carries the presenter's video and everyone's audio, and is told the other tiles are paused;
    nobody else's video changes. Told it is done, or after IMAGES_FIRST_MAX_S, the tiles come
    back. On a fast link it changes nothing."""
    # These peers send no transport-cc feedback (no estimate: a LAN): give them a thin link.
    estimate: dict[str, int | None] = {"bps": 1_000_000}
    monkeypatch.setattr(Downlink, "estimate", property(lambda _: estimate["bps"]))
    a, b, c, d = (BrowserPeer(events, "board", n) for n in ("a", "b", "c", "d"))
    try:
        for peer in (a, b, c, d):
            await peer.publish()
        await sfu.set_presenter("board", "b")
        await a.wait_frames([track_id("c", "video"), track_id("d", "video")], 5)
        cameras = {track_id(n, "video") for n in ("b", "c", "d")}
        # What the room asks a's allocator for.
        allocator = sfu._rooms["board"].participant("a").allocator
        asked: list[tuple[list[Any], int | None]] = []
        allocate = allocator.allocate

        def recording(budget: int, tracks: Any, cap: int | None = None) -> Any:
            asked.append((list(tracks), cap))
            return allocate(budget, asked[-1][0], cap)

        monkeypatch.setattr(allocator, "allocate", recording)

        await sfu.images_first("board", "a", True)
        videos, cap = [t for t in asked[-1][0] if t.kind == "video"], asked[-1][1]
        assert cap == 1 and len(videos) == 3
        assert [t.stage for t in videos].count(True) == 1
        await _quality(events, "a", {track_id("c", "video"): "paused"})
        await _quality(events, "a", {track_id("d", "video"): "paused"})
        assert await _still(a, track_id("c", "video"))
        await a.wait_frames([track_id("b", "video")], a.frames[track_id("b", "video")] + 5)
        await a.wait_frames([track_id("c", "audio")], a.frames[track_id("c", "audio")] + 5)
        # Another subscriber's tiles are untouched.
        await d.wait_frames([track_id("c", "video")], d.frames[track_id("c", "video")] + 5)

        await sfu.images_first("board", "a", False)
        await a.wait_frames([track_id("c", "video")], a.frames[track_id("c", "video")] + 5)
        told = dict(events.of(LinkQuality, "a")[-1].tracks)
        assert {told.get(track) for track in cameras} <= {"full", "reduced"}, told

        # A browser that never says it is done does not hold the tiles back for ever.
        monkeypatch.setattr(room_module, "IMAGES_FIRST_MAX_S", 1.0)
        await sfu.images_first("board", "a", True)
        await _quality(events, "a", {track_id("c", "video"): "paused"})
        await a.wait_frames([track_id("c", "video")], a.frames[track_id("c", "video")] + 5)

        # A link that carries an image in a fraction of a second keeps its tiles, and so does
        # one without an estimate (a LAN).
        for fast in (room_module.IMAGES_FIRST_BELOW_BPS, None):
            estimate["bps"] = fast
            asked.clear()
            await sfu.images_first("board", "a", True)
            assert asked and asked[-1][1] is not None and asked[-1][1] > 1, asked[-1:]
            await a.wait_frames([track_id("c", "video")], a.frames[track_id("c", "video")] + 10)

        # Unknown rooms and participants change nothing.
        await sfu.images_first("board", "nobody", True)
        await sfu.images_first("elsewhere", "a", True)
    finally:
        for peer in (a, b, c, d):
            await peer.close()


def test_a_tile_gets_the_layer_it_is_shown_at() -> None:
    """The stage and a small grid get every layer; a large grid the middle one (320x180); and
    while the subscriber waits for an image, the stage too, so the image has the link."""
    assert tile_layer(2, stage=True, cameras=SMALL_TILES + 4, images_first=False) == 2
    assert tile_layer(2, stage=False, cameras=SMALL_TILES, images_first=False) == 2
    assert tile_layer(2, stage=False, cameras=SMALL_TILES + 1, images_first=False) == 1
    assert tile_layer(2, stage=True, cameras=2, images_first=True) == 1
    assert tile_layer(0, stage=True, cameras=2, images_first=True) == 0  # one layer sent
