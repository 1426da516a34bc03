"""The bandwidth estimator against a simulated bottleneck: a sender paced at the estimate, a
FIFO link (rate, tail drop, fixed delay, random loss), the receiver's transport-cc feedback
built by TwccRecorder, parsed, matched by SendHistory and fed back. All on one injected clock."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pytest

from media.estimator import BandwidthEstimator
from media.twcc import PacketResult, SendHistory, TwccFeedback, TwccRecorder, parse_feedback

PACKET = 1200
STEP = 0.005


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Link:
    """One direction of the emulated link: random loss, a rate-limited FIFO with a byte limit
    (tail drop), then a fixed delay."""

    capacity_bps: float = 2_000_000
    delay: float = 0.125
    loss: float = 0.0
    queue_s: float = 0.3  # the FIFO holds this long a backlog at capacity
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    _busy_until: float = 0.0

    def carry(self, size: int, now: float) -> float | None:
        """When a packet sent now arrives, or None if it is lost."""
        if self.rng.random() < self.loss:
            return None
        start = max(now, self._busy_until)
        if start - now > self.queue_s:
            return None
        self._busy_until = start + size * 8 / self.capacity_bps
        return self._busy_until + self.delay


@dataclass
class Run:
    """A sender paced at min(estimate, demand) plus probes, over ``link``, with feedback every
    100 ms from the receiver, delayed by the link's delay on its way back."""

    link: Link = field(default_factory=Link)
    demand: float = 3_000_000
    initial_bps: int = 1_000_000
    feedback: bool = True
    hostile: bool = False
    clock: Clock = field(default_factory=Clock)
    estimates: list[tuple[float, int]] = field(default_factory=list)
    probes: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.estimator = BandwidthEstimator(
            initial_bps=self.initial_bps, min_bps=50_000, max_bps=10_000_000, clock=self.clock
        )
        self.history = SendHistory()
        self.recorder = TwccRecorder()
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._n = 0
        self._seq = 0
        self._budget = 0.0
        self._probe_until = 0.0
        self._probe_bps = 0.0
        self._next_feedback = self.clock.now + 0.1
        self._next_tick = self.clock.now
        self.start = self.clock.now

    def at(self, t: float, action: Callable[[], None]) -> None:
        self._n += 1
        heapq.heappush(self._events, (t, self._n, action))

    def run_until(self, seconds: float, each_step: Callable[[float], None] | None = None) -> None:
        end = self.start + seconds
        while self.clock.now < end:
            now = self.clock.now = self.clock.now + STEP
            while self._events and self._events[0][0] <= now:
                _, _, action = heapq.heappop(self._events)
                action()
            if each_step is not None:
                each_step(now - self.start)
            self._send(now)
            if now >= self._next_feedback:
                self._next_feedback += 0.1
                self._send_feedback(now)
            if now >= self._next_tick:
                self._next_tick += 0.05
                self.estimator.tick(now)
            self.estimates.append((now - self.start, self.estimator.estimate))

    def _send(self, now: float) -> None:
        est = self.estimator
        est.set_demand(int(self.demand))
        target = est.probe_target(now)
        if target is not None:
            self.probes.append((now - self.start, target))
            self._probe_until = now + est.probe_seconds
            self._probe_bps = target
        probing = now < self._probe_until
        rate = self._probe_bps if probing else min(est.estimate, self.demand)
        self._budget = min(self._budget + rate * STEP / 8, 4 * PACKET)
        while self._budget >= PACKET:
            self._budget -= PACKET
            seq = self._seq & 0xFFFF
            self._seq += 1
            self.history.on_sent(seq, PACKET, now, probe=probing)
            arrival = self.link.carry(PACKET, now)
            if arrival is not None:
                self.at(arrival, partial(self.recorder.record, seq, arrival))

    def _send_feedback(self, now: float) -> None:
        if not self.feedback:
            return
        packets = self.recorder.feedback(1, 2)
        if self.hostile:  # a misbehaving subscriber's nonsense alongside the real feedback
            nonsense = TwccFeedback(1, 2, (self._seq + 30000) & 0xFFFF, 0, 5, [(0, 1.0)] * 900)
            behind = TwccFeedback(1, 2, (self._seq - 20000) & 0xFFFF, 0, 5, [(0, 1.0)] * 10)
            for fb in (nonsense, behind):
                self.at(now + self.link.delay, partial(self._deliver, [fb]))
        fbs = [parse_feedback(p) for p in packets]
        self.at(now + self.link.delay, lambda: self._deliver(fbs))

    def _deliver(self, fbs: list[TwccFeedback]) -> None:
        results: list[PacketResult] = []
        for fb in fbs:
            results += self.history.on_feedback(fb)
        self.estimator.on_results(results)

    def between(self, t0: float, t1: float) -> list[int]:
        return [e for t, e in self.estimates if t0 <= t < t1]


CAPACITY = 2_000_000


def test_estimate_converges_to_the_bottleneck() -> None:
    run = Run()
    run.run_until(20.0)
    settled = run.between(10.0, 20.0)
    assert min(settled) >= 0.6 * CAPACITY, min(settled)
    assert max(settled) <= 1.1 * CAPACITY, max(settled)


def test_estimate_climbs_from_a_low_start() -> None:
    run = Run(initial_bps=300_000)
    run.run_until(25.0)
    settled = run.between(15.0, 25.0)
    assert min(settled) >= 0.6 * CAPACITY, min(settled)
    assert max(settled) <= 1.1 * CAPACITY, max(settled)
    assert run.probes, "a probe was asked for once feedback flowed"


def test_one_percent_random_loss_does_not_collapse_it() -> None:
    run = Run(link=Link(loss=0.01))
    run.run_until(30.0)
    settled = run.between(10.0, 30.0)
    assert min(settled) >= 0.6 * CAPACITY, min(settled)
    assert max(settled) <= 1.15 * CAPACITY, max(settled)  # GCC's sawtooth overshoots a little


def test_a_thirty_percent_loss_burst_reduces_then_recovers() -> None:
    run = Run()

    def burst(t: float) -> None:
        run.link.loss = 0.3 if 15.0 <= t < 18.0 else 0.0

    run.run_until(30.0, burst)
    before = run.between(12.0, 15.0)
    during = run.between(15.0, 18.5)
    assert min(before) >= 0.6 * CAPACITY
    assert min(during) <= 0.75 * min(before), (min(during), min(before))
    after = run.between(24.0, 30.0)
    assert min(after) >= 0.6 * CAPACITY, min(after)
    assert max(after) <= 1.1 * CAPACITY, max(after)


def test_random_loss_on_an_uncongested_link_is_not_cut_for() -> None:
    """An SFU's subscriber sent 800 kbit/s over 2 Mbit/s: no queue, so a 3 s burst of 30 %
    random loss is the path's own; cutting would only pause tiles that then come back late."""
    run = Run(demand=800_000)

    def burst(t: float) -> None:
        run.link.loss = 0.3 if 15.0 <= t < 18.0 else 0.0

    run.run_until(25.0, burst)
    before = min(run.between(12.0, 15.0))
    assert before >= 800_000
    assert run.estimator.loss_decreases == 0
    assert min(run.between(15.0, 25.0)) >= 0.9 * before, (min(run.between(15.0, 25.0)), before)


def test_lasting_loss_through_a_shallow_queue_is_cut_for() -> None:
    """A queue of 5 ms overflows before any delay shows: the loss alone, lasting, says so."""
    run = Run(link=Link(queue_s=0.005))

    def narrow(t: float) -> None:
        if t >= 15.0:
            run.link.capacity_bps = 500_000

    run.run_until(35.0, narrow)
    assert run.estimator.loss_decreases >= 1
    assert max(run.between(27.0, 35.0)) <= 1.2 * 500_000, max(run.between(27.0, 35.0))


def test_an_estimate_at_its_floor_is_probed_up_again() -> None:
    """Squeezed to the floor (100 kbit/s), an estimate finds a widened link again: its probes
    carry a dozen packets however low the rate (at 0.1 s they were two, never judged)."""
    run = Run(link=Link(capacity_bps=60_000))
    run.estimator.min_bps = 100_000

    def widen(t: float) -> None:
        run.link.capacity_bps = 60_000 if t < 15.0 else CAPACITY

    run.run_until(35.0, widen)
    assert min(run.between(10.0, 15.0)) == 100_000
    assert min(run.between(28.0, 35.0)) >= 0.6 * CAPACITY, min(run.between(28.0, 35.0))


def test_a_capacity_drop_is_followed_within_seconds() -> None:
    run = Run()

    def narrow(t: float) -> None:
        if t >= 15.0:
            run.link.capacity_bps = 500_000

    run.run_until(30.0, narrow)
    assert min(run.between(12.0, 15.0)) >= 0.6 * CAPACITY
    # Followed within 3 s; the queue overflowing on the way costs a loss-based dip, then the
    # estimate settles around the new capacity.
    assert max(run.between(18.0, 30.0)) <= 1.1 * 500_000, max(run.between(18.0, 30.0))
    assert min(run.between(20.0, 30.0)) >= 0.6 * 500_000, min(run.between(20.0, 30.0))


def test_an_app_limited_estimate_is_probed_up_when_demand_rises() -> None:
    run = Run(demand=400_000, initial_bps=300_000)

    def rise(t: float) -> None:
        run.demand = 400_000 if t < 12.0 else 3_000_000

    run.run_until(20.0, rise)
    limited = run.between(5.0, 12.0)
    assert max(limited) <= 1.5 * 400_000 + 20_000, max(limited)  # grows no further than demand
    assert any(t >= 12.0 for t, _ in run.probes)
    assert min(run.between(16.0, 20.0)) >= 0.6 * CAPACITY, min(run.between(16.0, 20.0))


def test_a_subscriber_that_never_sends_feedback_stays_at_the_fallback_rate() -> None:
    run = Run(feedback=False, initial_bps=2_000_000)
    run.run_until(10.0)
    assert run.between(0.0, 0.9) and min(run.between(0.0, 0.9)) == 2_000_000
    assert run.between(8.0, 10.0) == [300_000] * len(run.between(8.0, 10.0))
    assert not run.probes


def test_feedback_that_stops_halves_the_estimate_down_to_the_floor() -> None:
    run = Run()
    run.run_until(10.0)
    settled = run.estimator.estimate
    run.feedback = False
    run.run_until(11.5)
    assert run.estimator.estimate < settled
    run.run_until(20.0)
    assert run.estimator.estimate == 300_000


def test_not_sending_is_not_a_feedback_timeout() -> None:
    clock = Clock()
    estimator = BandwidthEstimator(initial_bps=1_000_000, clock=clock)
    for _ in range(100):
        clock.now += 0.05
        estimator.tick(clock.now, sending=False)
    assert estimator.estimate == 1_000_000


def test_absurd_feedback_is_ignored() -> None:
    run = Run(hostile=True)
    run.run_until(20.0)
    settled = run.between(10.0, 20.0)
    assert min(settled) >= 0.6 * CAPACITY, min(settled)
    assert max(settled) <= 1.1 * CAPACITY, max(settled)


def test_nonsense_arrival_times_do_not_move_the_estimate_wildly() -> None:
    clock = Clock()
    estimator = BandwidthEstimator(initial_bps=1_000_000, clock=clock)
    rng = random.Random(5)
    seq = 0
    for _ in range(50):
        clock.now += 0.1
        results = []
        for _ in range(20):
            arrival = rng.choice([None, rng.uniform(-1e6, 1e6)])
            results.append(PacketResult(seq, 1200, clock.now - 0.3, arrival))
            seq += 1
        estimator.on_results(results)
        assert 50_000 <= estimator.estimate <= 2_000_000


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"initial_bps": 10, "min_bps": 100}, "initial_bps"),
        ({"max_bps": 10}, "max_bps"),
        ({"fallback_bps": 10}, "fallback_bps 10"),
        ({"probe_duration": 0}, "probe_duration 0"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, int], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        BandwidthEstimator(**kwargs)  # type: ignore[arg-type]


def test_negative_demand_is_refused() -> None:
    with pytest.raises(ValueError, match="-5"):
        BandwidthEstimator().set_demand(-5)
