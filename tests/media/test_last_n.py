"""Last-N video: each subscriber gets video from the N most relevant others plus the presenter,
and audio from everyone, without renegotiating."""

from __future__ import annotations

import asyncio

from media.local import LocalSfu

from .browser import BrowserPeer, EventLog, track_id


async def _still(browser: BrowserPeer, track: str, seconds: float = 0.6) -> bool:
    before = browser.frames[track]
    await asyncio.sleep(seconds)
    return browser.frames[track] == before


async def test_last_n_limits_video_but_not_audio_and_the_presenter_always_shows(
    events: EventLog,
) -> None:
    sfu = LocalSfu(events, [], ice_timeout=10.0, last_n=1)
    events.sfu = sfu
    a, b, c = (BrowserPeer(events, "board", n) for n in ("a", "b", "c"))
    try:
        for browser in (a, b, c):
            await browser.publish()
        # Nobody has spoken: the earliest arrival ranks first. c sees a's video only.
        await c.wait_frames([track_id("a", "video"), track_id("b", "audio")], 5)
        assert c.frames[track_id("b", "video")] == 0
        assert await _still(c, track_id("b", "video"))
        answers = c.answers

        await sfu.set_presenter("board", "b")
        await c.wait_frames([track_id("b", "video")], 5)
        await c.wait_frames([track_id("a", "video")], c.frames[track_id("a", "video")] + 5)
        assert c.answers == answers  # switched by pausing forwarding, not by renegotiating

        await sfu.set_presenter("board", None)
        assert await _still(c, track_id("b", "video"))
        stats = await sfu.stats("board")
        assert stats.extra["keyframe_requests"] >= 1
    finally:
        for browser in (a, b, c):
            await browser.close()
        await sfu.close()
