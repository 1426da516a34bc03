"""The link emulator's model (tests/bench/link.py): rate, delay, loss, tail drop and the loss
burst, driven by an injected clock and random source (no TUN devices, no root)."""

from __future__ import annotations

import random

import pytest

from .link import OFF, Direction, LinkConfig

PACKET = bytes(1000)  # 8,000 bits: 4 ms on the wire at 2 Mbit/s


def lossless(**kwargs: float | int | None) -> LinkConfig:
    return LinkConfig(**{"loss": 0.0, **kwargs})  # type: ignore[arg-type]


def test_a_lone_packet_takes_its_time_on_the_wire_plus_the_delay() -> None:
    link = Direction(lossless(delay_s=0.125, rate_bps=2_000_000), random.Random(1).random)
    assert link.offer(PACKET, 10.0)
    assert link.next_delivery() == pytest.approx(10.0 + 0.004 + 0.125)
    assert link.due(10.128) == []
    assert link.due(10.129) == [PACKET]
    assert link.next_delivery() is None


def test_a_saturated_link_delivers_at_its_rate_in_order() -> None:
    link = Direction(
        lossless(delay_s=0.05, rate_bps=2_000_000, queue_packets=10_000), random.Random(1).random
    )
    # Offered at 4 Mbit/s for 2 s: twice what the link carries.
    packets = [i.to_bytes(4, "big") + PACKET[4:] for i in range(1000)]
    for i, packet in enumerate(packets):
        assert link.offer(packet, i * 0.002)
    delivered: list[bytes] = []
    times: list[float] = []
    t = 0.0
    while (when := link.next_delivery()) is not None:
        t = when
        got = link.due(t)
        delivered += got
        times += [t] * len(got)
    assert delivered == packets  # FIFO: nothing reordered, nothing lost
    # 1,000 × 8,000 bits at 2 Mbit/s is 4 s on the wire, then the delay.
    assert times[-1] == pytest.approx(4.0 + 0.05)
    gaps = {round(b - a, 6) for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {0.004}


def test_a_full_queue_drops_the_tail_and_counts_it() -> None:
    link = Direction(lossless(rate_bps=2_000_000, queue_packets=64), random.Random(1).random)
    accepted = [link.offer(PACKET, 0.0) for _ in range(100)]
    assert accepted == [True] * 64 + [False] * 36
    assert link.tail_dropped == 36
    assert link.queued(0.0) == 64
    # One packet's time later one has left, so one more fits.
    assert link.queued(0.004) == 63
    assert link.offer(PACKET, 0.004)
    assert not link.offer(PACKET, 0.004)


def test_random_loss_drops_about_the_configured_fraction() -> None:
    link = Direction(LinkConfig(loss=0.01, rate_bps=None, delay_s=0.0), random.Random(7).random)
    n = 100_000
    kept = sum(link.offer(b"x", i * 1e-4) for i in range(n))
    assert link.lost == n - kept
    assert 0.008 < link.lost / n < 0.012
    assert link.tail_dropped == 0


def test_loss_comes_before_the_queue_so_lost_packets_take_no_room() -> None:
    link = Direction(
        LinkConfig(loss=0.5, rate_bps=2_000_000, queue_packets=10), random.Random(3).random
    )
    for _ in range(40):
        link.offer(PACKET, 0.0)
    assert link.queued(0.0) == 10
    assert link.lost + link.tail_dropped + 10 == 40
    assert link.lost > 10


def test_a_burst_raises_loss_for_its_seconds_then_ends() -> None:
    link = Direction(LinkConfig(loss=0.01, rate_bps=None, delay_s=0.0), random.Random(5).random)
    link.burst(100.0, seconds=3.0, loss=0.3)
    assert link.loss_at(99.99) == 0.01
    assert link.loss_at(100.0) == 0.3
    assert link.loss_at(102.99) == 0.3
    assert link.loss_at(103.0) == 0.01
    n = 30_000
    during = sum(not link.offer(b"x", 100.0 + 3.0 * i / n) for i in range(n))
    assert 0.28 < during / n < 0.32
    after = sum(not link.offer(b"x", 104.0 + i * 1e-4) for i in range(n))
    assert after / n < 0.015


def test_off_is_a_plain_wire() -> None:
    link = Direction(OFF, random.Random(1).random)
    for i in range(1000):
        assert link.offer(PACKET, i * 1e-6)
    assert len(link.due(0.001)) == 1000


def test_a_tighter_configuration_never_reorders_what_is_in_flight() -> None:
    link = Direction(lossless(delay_s=0.5, rate_bps=None), random.Random(1).random)
    link.offer(b"first", 0.0)
    link.configure(lossless(delay_s=0.0, rate_bps=None))
    link.offer(b"second", 0.1)
    assert link.due(0.5) == [b"first", b"second"]


@pytest.mark.parametrize(
    "kwargs",
    [{"loss": 1.5}, {"loss": -0.1}, {"delay_s": -1}, {"rate_bps": 0}, {"queue_packets": 0}],
)
def test_a_bad_configuration_names_its_field(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LinkConfig(**kwargs)  # type: ignore[arg-type]


def test_a_bad_burst_is_refused() -> None:
    link = Direction(OFF, random.Random(1).random)
    with pytest.raises(ValueError, match="burst"):
        link.burst(0.0, seconds=0.0, loss=0.3)
    assert link.loss_at(0.0) == 0.0


# The remote's figures (bench_link.remote_figures) from synthetic getStats samples.


def _samples(fps: dict[str, list[float]], paused: frozenset[str] = frozenset()) -> list[dict]:  # type: ignore[type-arg]
    """One sample per 0.5 s; ``fps[track][i]`` the rate during interval i; participant = track."""
    frames = dict.fromkeys(fps, 0.0)
    steps = len(next(iter(fps.values())))
    out = []
    for i in range(steps + 1):
        out.append(
            {
                "t": 0.5 * i,
                "tiles": [{"participant": t, "track": t, "paused": t in paused} for t in fps],
                "video": {t: {"frames": int(frames[t]), "w": 640, "h": 360} for t in fps},
                "concealed": 10 * i,
                "total": 1000 * i,
            }
        )
        if i < steps:
            for t in fps:
                frames[t] += fps[t][i] * 0.5
    return out


def test_figures_leave_out_the_burst_and_find_the_recovery() -> None:
    from .bench_link import remote_figures

    # 20 s: 30 fps, then during the burst (8–11 s) 0 fps, back at 30 from 12 s.
    steady = [30.0] * 40
    hit = [30.0 if not 16 <= i < 24 else 0.0 for i in range(40)]
    samples = _samples({"stage": steady, "other": hit})
    figures = remote_figures(samples, (0.0, 20.0), (8.0, 11.0), "stage")
    assert figures["stage_fps"] == 30.0
    assert figures["min_visible_fps"] == 30.0  # the burst and 2 s after it left out
    assert figures["frozen_unpaused"] == 0
    assert figures["recovery_s"] == 1.5  # the interval 12.0–12.5 s is the first at ≥ 15 fps
    assert figures["concealed_audio_pct"] == 1.0
    assert figures["stage_size"] == "640x360"


def test_a_frozen_tile_counts_unless_the_page_marks_it_paused() -> None:
    from .bench_link import remote_figures

    samples = _samples({"stage": [30.0] * 20, "still": [30.0] * 4 + [0.0] * 16})
    figures = remote_figures(samples, (0.0, 10.0), None, "stage")
    assert figures["frozen_unpaused"] == 1
    assert figures["min_visible_fps"] == 6.0  # 60 frames in 10 s
    assert figures["recovery_s"] is None
    paused = _samples({"stage": [30.0] * 20, "still": [0.0] * 20}, frozenset({"still"}))
    figures = remote_figures(paused, (0.0, 10.0), None, "stage")
    assert figures["frozen_unpaused"] == 0
    assert figures["visible_tiles"] == 1
    assert figures["min_visible_fps"] == 30.0


def test_only_the_time_a_tile_is_shown_unpaused_counts() -> None:
    from .bench_link import remote_figures

    # "thumb" is paused (and marked so) for the first 6 s, then runs at 20 fps; "late" is
    # marked full again at 6 s but its pictures only come back at 8 s: 2 s frozen, unpaused.
    def paused_until(samples: list[dict], track: str, last: int) -> list[dict]:  # type: ignore[type-arg]
        for i, sample in enumerate(samples):
            for tile in sample["tiles"]:
                tile["paused"] = tile["track"] == track and i <= last
        return samples

    thumb = _samples({"stage": [30.0] * 20, "thumb": [0.0] * 12 + [20.0] * 8})
    figures = remote_figures(paused_until(thumb, "thumb", 12), (0.0, 10.0), None, "stage")
    assert figures["min_visible_fps"] == 20.0
    assert figures["frozen_unpaused"] == 0
    late = _samples({"stage": [30.0] * 20, "late": [0.0] * 16 + [20.0] * 4})
    figures = remote_figures(paused_until(late, "late", 12), (0.0, 10.0), None, "stage")
    assert figures["frozen_unpaused"] == 1
    assert figures["min_visible_fps"] == 11.4  # 40 frames in the 3.5 s it was shown (6.5-10 s)


def test_no_recovery_while_every_tile_is_paused() -> None:
    from .bench_link import remote_figures

    samples = _samples({"stage": [0.0] * 40}, frozenset({"stage"}))
    assert remote_figures(samples, (0.0, 20.0), (8.0, 11.0), "stage")["recovery_s"] is None


def test_no_recovery_when_a_tile_never_comes_back() -> None:
    from .bench_link import remote_figures

    samples = _samples({"stage": [30.0] * 16 + [0.0] * 24})
    assert remote_figures(samples, (0.0, 20.0), (8.0, 11.0), "stage")["recovery_s"] is None
