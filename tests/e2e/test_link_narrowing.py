"""A subscriber whose link narrows gets a lower simulcast layer, and a higher one when it widens
again, in real Chromium: two participants publish their cameras in three layers; the packets
from the SFU to one of them pass through the benchmark's link emulator (``tests/bench/link.py``:
a rate-limited FIFO with tail drop and a delay) placed at the SFU's socket. Nothing tells the
SFU the rate: the browser's transport-cc feedback does, through the estimator and allocator."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from server.app import SIGNALLING
from tests.bench.link import Direction, LinkConfig

from .conftest import ROOT, Server
from .test_room import Member, _join, _next_session_with_ready_case, _wait_playing
from .test_room_quality import LiveServer, serve_in_thread

WIDE = LinkConfig(delay_s=0.02, loss=0.0, rate_bps=None)
NARROW = LinkConfig(delay_s=0.02, loss=0.0, rate_bps=200_000, queue_packets=40)

# In the page: the biggest picture among the inbound video streams, and its frames decoded.
RECEIVED = """
async () => {
  let best = null;
  (await window.__eboard.live.down.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded
        && (!best || s.framesDecoded > best.framesDecoded)) best = s;
  });
  const quality = window.__eboard.live.quality;
  return best ? {
    width: best.frameWidth ?? 0,
    frames: best.framesDecoded,
    states: Object.values(quality?.tracks ?? {}),
    estimate: quality?.estimate_kbps ?? 0,
  } : null;
}
"""


class Shaper:
    """The link emulator between one subscriber's Downlink and the wire, on the server's loop."""

    def __init__(self, link: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._write = link._write
        self._loop = loop
        self.direction = Direction(WIDE, random.Random(7).random)
        self._timer: asyncio.TimerHandle | None = None
        link._write = self.offer

    def offer(self, data: bytes) -> None:
        self.direction.offer(data, self._loop.time())
        self._schedule()

    def _schedule(self) -> None:
        due = self.direction.next_delivery()
        if due is not None and self._timer is None:
            self._timer = self._loop.call_at(due, self._deliver)

    def _deliver(self) -> None:
        self._timer = None
        for packet in self.direction.due(self._loop.time()):
            self._write(packet)
        self._schedule()


@pytest.fixture(scope="module")
def narrowable(
    tmp_path_factory: pytest.TempPathFactory, browser: Browser
) -> Iterator[tuple[LiveServer, int, dict[str, Member]]]:
    assert (ROOT / "client" / "dist" / "index.html").exists(), "build the client: make client"
    data_dir = tmp_path_factory.mktemp("e2e-narrow")
    served: tuple[Server, LiveServer]
    with serve_in_thread(data_dir, "--media", "in-process") as served:
        server, live = served
        session_id, _ = _next_session_with_ready_case(server)
        members = {n: _join(browser, server, n, session_id) for n in ("chair", "surgeon")}
        try:
            yield live, session_id, members
        finally:
            for member in members.values():
                member.context.close()


def _shape(live: LiveServer, session_id: int, participant: str) -> Shaper:
    async def install() -> Shaper:
        sfu = live.app[SIGNALLING]._sfu
        link = sfu._rooms[str(session_id)].participant(participant).down.link
        return Shaper(link, asyncio.get_running_loop())

    return asyncio.run_coroutine_threadsafe(install(), live.loop).result(timeout=10)


def _set(live: LiveServer, shaper: Shaper, config: LinkConfig) -> None:
    live.loop.call_soon_threadsafe(shaper.direction.configure, config)


def _received_width(
    page: Page, test: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    """Poll the page's inbound video statistics until ``test`` holds; return them."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        seen = page.evaluate(RECEIVED)
        if seen and test(seen):
            return seen
        page.wait_for_timeout(250)
    raise AssertionError(f"{what}: not within {timeout} s; last seen {seen}")


def test_a_subscribers_video_steps_down_when_its_link_narrows_and_up_when_it_widens(
    narrowable: tuple[LiveServer, int, dict[str, Member]],
) -> None:
    live, session_id, members = narrowable
    chair, surgeon = members["chair"].page, members["surgeon"].page
    for page in (chair, surgeon):
        _wait_playing(page, count=1)
    surgeon_id = str(surgeon.evaluate("window.__eboard.live.you"))
    chair_id = str(chair.evaluate("window.__eboard.live.you"))
    shaper = _shape(live, session_id, surgeon_id)
    tile = surgeon.locator(f'[data-testid="room-tile"][data-participant="{chair_id}"]')

    # A wide link: more than the 160×90 layer (the chair's browser sends what its own estimate
    # allows, the SFU forwards what the surgeon's allows).
    wide = _received_width(surgeon, lambda r: r["width"] >= 320, 60, "a wide link")
    assert wide["width"] >= 320, wide

    _set(live, shaper, NARROW)  # 200 kbit/s: less than any layer but the smallest, with audio
    # The SFU learns the narrower link from the browser's feedback alone (the queue's delay
    # grows before anything is lost) and steps the video down: to the smallest layer, or
    # paused while even that does not fit with the audio (RED) beside it; the tile says so.
    narrow = _received_width(
        surgeon,
        lambda r: r["estimate"] < 300 and r["states"] in (["reduced"], ["paused"]),
        60,
        "narrowed",
    )
    if narrow["states"] == ["reduced"]:
        stepped = _received_width(surgeon, lambda r: 0 < r["width"] <= 160, 20, "to 160×90")
    else:  # paused: no more pictures (a few already on their way may land)
        surgeon.wait_for_timeout(2000)
        stepped = dict(surgeon.evaluate(RECEIVED))
        assert stepped["frames"] <= narrow["frames"] + 10, (narrow, stepped)
    assert stepped["estimate"] > 0, stepped

    moved = stepped["frames"] + 30
    _set(live, shaper, WIDE)
    _received_width(
        surgeon,
        # New pictures, not the last size the statistics remember from before the pause.
        lambda r: r["width"] >= 320 and r["states"] == ["full"] and r["frames"] > moved,
        90,
        "widened again",
    )
    expect(tile).to_have_attribute("data-quality", "full")
