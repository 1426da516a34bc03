"""The pacer, driven by an injected clock: rate, burst, priorities, ages, bounds, a NACK storm."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

import pytest

from media.pacer import MAX_PACKET, Pacer, RtxBudget
from media.sfu import MediaError

TICK = 0.005  # the lead's polling interval


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Wire:
    """What ``emit`` put on the wire, with the time it left."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes, str]] = []

    def __call__(self, data: bytes, kind: str) -> None:
        self.sent.append((self.clock.now, data, kind))

    def bytes_of(self, kind: str) -> int:
        return sum(len(data) for _, data, k in self.sent if k == kind)

    def kinds(self) -> list[str]:
        return [k for _, _, k in self.sent]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wire(clock: Clock) -> Wire:
    return Wire(clock)


def packet(size: int = 1000, tag: int = 0) -> bytes:
    return tag.to_bytes(4, "big") + bytes(size - 4)


def run_for(pacer: Pacer, clock: Clock, seconds: float, feed: object = None) -> None:
    """Advance the clock in polling ticks; ``feed(tick)`` enqueues what arrives in each."""
    for tick in range(round(seconds / TICK)):
        clock.now += TICK
        if callable(feed):
            feed(tick)
        pacer.poll()


# Rate and burst.


@pytest.mark.parametrize(("rate", "factor"), [(300_000, 1.0), (1_000_000, 1.5), (2_000_000, 2.5)])
def test_rate_is_respected_within_10_percent_over_5_s(
    clock: Clock, wire: Wire, rate: int, factor: float
) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=rate, pacing_factor=factor)
    assert pacer.rate_bps == round(rate * factor)
    per_tick = round(2 * rate * factor / 8 / 1000 * TICK) + 1  # twice what may leave

    def feed(tick: int) -> None:
        for _ in range(per_tick):
            pacer.enqueue(packet(), "video", clock.now, stream="cam")

    run_for(pacer, clock, 5.0, feed)
    expected = rate * factor / 8 * 5.0
    assert abs(pacer.bytes_sent - expected) <= 0.1 * expected
    assert wire.bytes_of("video") == pacer.bytes_sent
    assert pacer.dropped_video > 0  # the overload was real


def test_after_a_quiet_spell_only_the_burst_leaves_at_once(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=1_000_000, pacing_factor=1.5, burst=0.01)
    clock.now += 1.0
    for i in range(50):
        pacer.enqueue(packet(tag=i), "video", clock.now)
    pacer.poll()
    burst = 1_500_000 / 8 * 0.01  # 1,875 bytes
    assert 0 < pacer.bytes_sent <= burst + MAX_PACKET
    first = pacer.bytes_sent
    clock.now += TICK
    pacer.poll()
    assert pacer.bytes_sent - first <= 1_500_000 / 8 * TICK + MAX_PACKET


def test_set_rate_changes_the_pace(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=1_000_000, pacing_factor=1.0)

    def feed(tick: int) -> None:
        for _ in range(3):
            pacer.enqueue(packet(), "video", clock.now)

    run_for(pacer, clock, 1.0, feed)
    fast = pacer.bytes_sent
    pacer.set_rate(250_000)
    run_for(pacer, clock, 1.0, feed)
    slow = pacer.bytes_sent - fast
    assert abs(fast - 125_000) <= 12_500
    assert abs(slow - 31_250) <= 3_125


# Priorities.


def test_retransmissions_then_video_then_padding(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=1_000_000)
    clock.now += 1.0
    for i in range(5):
        pacer.enqueue(packet(tag=i), "padding", clock.now)
        pacer.enqueue(packet(tag=i), "video", clock.now)
        pacer.enqueue(packet(tag=i), "rtx", clock.now)
    run_for(pacer, clock, 0.2)
    assert wire.kinds() == ["rtx"] * 5 + ["video"] * 5 + ["padding"] * 5
    video = [data for _, data, kind in wire.sent if kind == "video"]
    assert video == [packet(tag=i) for i in range(5)]  # in order


def test_audio_is_sent_at_once_ahead_of_queued_video(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=300_000)
    for i in range(200):
        pacer.enqueue(packet(tag=i), "video", clock.now)
    pacer.poll()
    before = len(wire.sent)
    assert pacer.enqueue(packet(160), "audio", clock.now)
    assert wire.sent[-1] == (clock.now, packet(160), "audio")
    assert len(wire.sent) == before + 1
    assert pacer.queued_packets == 200 - before


def test_audio_is_charged_to_the_budget(clock: Clock, wire: Wire) -> None:
    """With audio and overloading video together, the total still keeps the pace."""
    pacer = Pacer(wire, clock=clock, rate_bps=400_000, pacing_factor=1.0)

    def feed(tick: int) -> None:
        pacer.enqueue(packet(), "video", clock.now)
        pacer.enqueue(packet(), "video", clock.now)
        if tick % 4 == 0:  # every 20 ms
            pacer.enqueue(packet(200), "audio", clock.now)

    run_for(pacer, clock, 5.0, feed)
    assert wire.bytes_of("audio") == 250 * 200
    assert abs(pacer.bytes_sent - 250_000) <= 25_000


# Ages and bounds.


def test_a_retransmission_past_its_age_is_dropped(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=1_000_000, max_age_rtx=0.4)
    assert pacer.enqueue(packet(tag=1), "rtx", clock.now - 0.41)
    assert pacer.enqueue(packet(tag=2), "rtx", clock.now - 0.39)
    pacer.poll()
    assert [data for _, data, _ in wire.sent] == [packet(tag=2)]
    assert pacer.dropped_rtx == 1


def test_set_rtt_keeps_retransmissions_twice_the_rtt(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=1_000_000)
    pacer.set_rtt(0.1)
    pacer.enqueue(packet(tag=1), "rtx", clock.now - 0.25)
    pacer.poll()
    assert pacer.dropped_rtx == 1 and not wire.sent
    pacer.set_rtt(0.25)
    pacer.enqueue(packet(tag=2), "rtx", clock.now - 0.45)
    pacer.poll()
    assert pacer.dropped_rtx == 1 and len(wire.sent) == 1


def test_video_past_its_age_drops_its_stream_and_asks_for_a_keyframe(
    clock: Clock, wire: Wire
) -> None:
    asked: list[Hashable] = []
    pacer = Pacer(
        wire, clock=clock, rate_bps=10_000, pacing_factor=1.0, max_age=0.5,
        on_video_dropped=asked.append,
    )  # fmt: skip
    start = clock.now
    for i in range(20):
        pacer.enqueue(packet(tag=i), "video", start, stream="a" if i % 2 else "b")
    pacer.poll()
    sent = len(wire.sent)
    assert sent >= 1
    clock.now = start + 0.5
    pacer.poll()
    assert asked == []  # not yet past its age
    clock.now = start + 0.51
    pacer.poll()
    assert sorted(asked) == ["a", "b"]
    assert pacer.queued_packets == 0
    assert pacer.dropped_video + len(wire.sent) == 20


def test_a_link_that_fell_behind_sheds_the_least_important_streams_only(
    clock: Clock, wire: Wire
) -> None:
    """On a thin link, dropping every stream whose packet reached the head late dropped them
    all at once, and their keyframes, asked for together, filled the queue again. Now whole
    streams go, least important first, until the rest leaves within half the age limit: the
    stage's late packets go out, late but whole."""
    asked: list[Hashable] = []
    pacer = Pacer(
        wire, clock=clock, rate_bps=1_000_000, pacing_factor=1.0, max_age=0.5,
        on_video_dropped=asked.append,
    )  # fmt: skip
    pacer.set_priorities({"stage": 0, "tile": 1})  # "other" is not ranked: the least important
    start = clock.now
    # Interleaved, as frames of several streams arrive: 85 KB, 0.68 s at 125 KB/s.
    counts = {"stage": 25, "tile": 30, "other": 30}
    for i in range(30):
        for stream, count in counts.items():
            if i < count:
                pacer.enqueue(packet(tag=i), "video", start, stream=stream)
    clock.now = start + 0.51
    pacer.poll()
    assert asked == ["other", "tile"]  # 25 KB of the stage's left: 0.2 s
    run_for(pacer, clock, 0.3)
    assert pacer.queued_packets == 0
    assert len(wire.sent) == 25  # every packet of the stage, none of the others
    assert pacer.dropped_video == 60


def test_video_twice_its_age_is_dropped_whatever_its_rank(clock: Clock, wire: Wire) -> None:
    asked: list[Hashable] = []
    pacer = Pacer(wire, clock=clock, rate_bps=1_000_000, max_age=0.5, on_video_dropped=asked.append)
    pacer.set_priorities({"stage": 0})
    pacer.enqueue(packet(tag=1), "video", clock.now - 0.7, stream="stage")
    pacer.poll()
    assert asked == [] and len(wire.sent) == 1  # late, but the queue is short: sent
    pacer.enqueue(packet(tag=2), "video", clock.now - 1.01, stream="stage")
    pacer.poll()
    assert asked == ["stage"] and len(wire.sent) == 1
    with pytest.raises(MediaError, match="at most 1024 stream priorities"):
        pacer.set_priorities({n: n for n in range(1025)})


def test_the_video_queue_is_bounded_in_packets(clock: Clock, wire: Wire) -> None:
    asked: list[Hashable] = []
    pacer = Pacer(wire, clock=clock, rate_bps=10_000, max_queue=10, on_video_dropped=asked.append)
    for i in range(10):
        assert pacer.enqueue(packet(tag=i), "video", clock.now, stream="a" if i < 5 else "b")
    assert not pacer.enqueue(packet(tag=10), "video", clock.now, stream="a")
    assert asked == ["a"]
    assert pacer.dropped_video == 6  # the refused one and the stream's five queued
    assert pacer.queued_packets == 5
    # The room freed by dropping stream a is usable again.
    assert pacer.enqueue(packet(tag=11), "video", clock.now, stream="b")


def test_the_video_queue_is_bounded_in_bytes(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=10_000, max_queue_bytes=5000)
    assert all(pacer.enqueue(packet(), "video", clock.now) for _ in range(5))
    assert not pacer.enqueue(packet(), "video", clock.now)
    assert pacer.queued_bytes == 5000 and pacer.dropped_video == 1


def test_a_dropped_packet_without_a_stream_drops_only_itself(clock: Clock, wire: Wire) -> None:
    asked: list[Hashable] = []
    pacer = Pacer(wire, clock=clock, rate_bps=10_000, max_queue=3, on_video_dropped=asked.append)
    for _ in range(3):
        pacer.enqueue(packet(), "video", clock.now)
    assert not pacer.enqueue(packet(), "video", clock.now)
    assert pacer.queued_packets == 3 and asked == []


def test_queue_ms_is_the_time_to_drain(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=1_000_000, pacing_factor=1.0)
    for _ in range(10):
        pacer.enqueue(packet(), "video", clock.now)
    assert pacer.queue_ms == pytest.approx(80.0)


# Retransmission budget.


def test_rtx_budget_allows_its_share_and_a_window() -> None:
    budget = RtxBudget(1_000_000, share=0.2, window=0.5)  # 25,000 B/s, 12,500 B saved
    now = 0.0
    assert sum(budget.allow(1000, now) for _ in range(20)) == 12
    now += 1.0
    assert sum(budget.allow(1000, now) for _ in range(40)) == 12  # capped at the window
    now += 0.04
    assert sum(budget.allow(1000, now) for _ in range(40)) == 1


def test_a_nack_storm_costs_only_its_share_and_audio_flows_on_time(
    clock: Clock, wire: Wire
) -> None:
    rate = 1_000_000
    pacer = Pacer(wire, clock=clock, rate_bps=rate, rtx_share=0.2)
    audio_created: list[float] = []
    accepted = 0

    def feed(tick: int) -> None:
        nonlocal accepted
        for i in range(10):  # 10,000 NACKed packets over the 5 s
            accepted += pacer.enqueue(packet(tag=i), "rtx", clock.now)
        if tick % 4 == 0:  # Opus every 20 ms
            audio_created.append(clock.now)
            pacer.enqueue(packet(160), "audio", clock.now)
        if tick % 4 == 0:  # 400 kbit/s of video
            pacer.enqueue(packet(), "video", clock.now, stream="cam")

    run_for(pacer, clock, 5.0, feed)
    window = 0.2 * rate / 8 * 0.5
    share = 0.2 * rate / 8 * 5.0
    assert 0.8 * share <= wire.bytes_of("rtx") <= share + window
    assert accepted < 10_000 * 0.02 and pacer.dropped_rtx >= 10_000 - accepted
    sent_audio = [t for t, _, kind in wire.sent if kind == "audio"]
    assert sent_audio == audio_created  # each left the moment it came
    assert wire.bytes_of("video") >= 0.95 * 400_000 / 8 * 5.0
    assert pacer.dropped_video == 0


# Running, failing sinks, bad input.


async def test_run_sends_until_stopped(wire: Wire) -> None:
    arrived = asyncio.Event()

    def emit(data: bytes, kind: str) -> None:
        arrived.set()

    pacer = Pacer(emit, rate_bps=1_000_000)
    task = asyncio.create_task(pacer.run(interval=0.002))
    pacer.enqueue(packet(), "video", time.monotonic())
    await asyncio.wait_for(arrived.wait(), timeout=5.0)
    pacer.stop()
    await asyncio.wait_for(task, timeout=5.0)
    assert pacer.packets_sent == 1


def test_a_failing_emit_does_not_wedge_the_queue(clock: Clock) -> None:
    calls: list[bytes] = []

    def emit(data: bytes, kind: str) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise OSError("network unreachable")

    pacer = Pacer(emit, clock=clock, rate_bps=1_000_000)
    for i in range(3):
        pacer.enqueue(packet(tag=i), "video", clock.now)
    run_for(pacer, clock, 0.1)
    assert calls == [packet(tag=i) for i in range(3)]
    assert pacer.queued_packets == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("x" * 10, "video", 0.0), "bytes"),
        ((b"", "video", 0.0), "1 to 1500"),
        ((bytes(1501), "video", 0.0), "1 to 1500"),
        ((b"x", "data", 0.0), "kind"),
        ((b"x", "video", float("nan")), "finite"),
        ((b"x", "video", "now"), "created"),
    ],
)
def test_a_bad_packet_is_refused_and_changes_nothing(
    clock: Clock, wire: Wire, args: tuple[object, ...], field: str
) -> None:
    pacer = Pacer(wire, clock=clock)
    pacer.enqueue(packet(), "video", clock.now)
    with pytest.raises(MediaError, match=field):
        pacer.enqueue(*args)  # type: ignore[arg-type]
    assert pacer.queued_packets == 1 and pacer.queued_bytes == 1000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate_bps": 0}, "rate_bps"),
        ({"rate_bps": True}, "rate_bps"),
        ({"pacing_factor": 0.5}, "pacing_factor"),
        ({"max_queue": 0}, "max_queue"),
        ({"max_age": float("nan")}, "max_age"),
        ({"rtx_share": 1.5}, "rtx share"),
        ({"burst": 5.0}, "burst"),
    ],
)
def test_bad_settings_are_refused(
    clock: Clock, wire: Wire, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(MediaError, match=field):
        Pacer(wire, clock=clock, **kwargs)  # type: ignore[arg-type]


def test_a_bad_rate_change_is_refused_and_keeps_the_rate(clock: Clock, wire: Wire) -> None:
    pacer = Pacer(wire, clock=clock, rate_bps=500_000, pacing_factor=1.0)
    for bad in (-1, 5, 1.5e6, 10**12):
        with pytest.raises(MediaError, match="rate_bps"):
            pacer.set_rate(bad)  # type: ignore[arg-type]
    assert pacer.rate_bps == 500_000
