"""BandwidthEstimator: how many bits per second one subscriber's link carries, from the
transport-cc feedback of what the SFU sent it (``media.twcc.SendHistory`` results).

In the spirit of Google Congestion Control (draft-ietf-rmcat-gcc-02), simplified:

- delay-based: packets are grouped into 5 ms send bursts; the growth of one-way delay between
  groups is smoothed and a trendline (least squares over 20 groups) gives its slope; an overuse
  detector compares the slope against an adaptive threshold; an AIMD controller then increases
  (8 %/s far from the last congestion point, about one packet per response time near it),
  holds, or decreases to 0.85 × the acknowledged throughput;
- loss-based: over windows of a few dozen packets, loss above 10 % cuts by (1 − 0.5·loss)
  when it is congestion (an overuse in the 2 s before, or heavy loss lasting 4 s: a shallow
  queue overflows before its delay shows), not when the delay stays flat through a few
  seconds of loss (a lossy path's own: sending less would not lower it); below 2 % lets the
  rate grow again; the estimate is the smaller of the two;
- no feedback: ``tick`` halves the estimate each second without feedback while sending, down to
  a safe floor (``fallback_bps``); a subscriber that never sends feedback stays there;
- probing: additive increase and the cap at 1.5 × the acknowledged rate keep an estimate that
  is below what the allocator wants from finding room quickly (it is app-limited: the allocator
  never sends more than the estimate). ``probe_target`` asks the pacer to send, for
  ``probe_duration`` seconds (longer at a low rate: a dozen packets at least), at twice the
  estimate, flagging those packets ``probe``; if they
  are received without a delay-based decrease, the estimate jumps to the rate they got through
  at. A probe is asked for once feedback flows, then whenever the allocator wants more than the
  estimate and delay and loss are normal: a second after a drop, otherwise every few seconds,
  backing off to every 5 s after probes that found nothing.

Times given to ``on_results`` are the sender's clock for send times (the clock this estimator
is given, which must be the one ``SendHistory.on_sent`` was fed from) and the receiver's for
arrival times; only differences of each are used.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Collection

from .twcc import PacketResult

__all__ = ["BandwidthEstimator"]

_NORMAL, _OVERUSE, _UNDERUSE = "normal", "overuse", "underuse"
_BURST = 0.005  # packets sent within 5 ms of each other form one group
_TRENDLINE_WINDOW = 20
_SMOOTHING = 0.9
_THRESHOLD_GAIN = 4.0
_MAX_STEP_DOWN = 0.7
_BETA = 0.85
_MAX_PROBE_INTERVAL = 5.0
_CONGESTION_MEMORY = 2.0  # seconds an overuse makes the loss that follows count as congestion
_RANDOM_LOSS_GRACE = 4.0  # seconds of heavy loss, the delay flat, before it counts all the same
_PROBE_MIN_BYTES = 12 * 1200  # a probe spans at least this many bytes, however low its rate


class _DelayDetector:
    """Arrival-time groups → trendline of the delay gradient → overuse, normal or underuse."""

    def __init__(self) -> None:
        self.state = _NORMAL
        self._group: list[float] | None = None  # first send, last send, last arrival
        self._prev: list[float] | None = None
        self._reset()

    def _reset(self) -> None:
        self._origin: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._points: deque[tuple[float, float]] = deque(maxlen=_TRENDLINE_WINDOW)
        self._deltas = 0
        self._trend = 0.0
        self._threshold = 12.5  # ms
        self._last_threshold_update: float | None = None
        self._overuse_ms = -1.0
        self._overuse_count = 0
        self.state = _NORMAL

    def add(self, send: float, arrival: float) -> None:
        group = self._group
        if group is None:
            self._group = [send, send, arrival]
            return
        if send < group[0]:
            return  # sent before the current group: out of order
        in_burst = arrival - group[2] < _BURST and (arrival - group[2]) - (send - group[1]) < 0
        if send - group[0] <= _BURST or in_burst:
            group[1] = max(group[1], send)
            group[2] = max(group[2], arrival)
            return
        if self._prev is not None:
            self._on_delta(group, self._prev)
        self._prev = group
        self._group = [send, send, arrival]

    def _on_delta(self, group: list[float], prev: list[float]) -> None:
        send_delta = group[1] - prev[1]
        arrival_delta = group[2] - prev[2]
        if abs(arrival_delta - send_delta) > 3.0 or arrival_delta < -3.0:
            self._reset()  # the receiver's clock jumped (or the feedback is nonsense)
            return
        if self._origin is None:
            self._origin = group[2]
        self._deltas = min(self._deltas + 1, 1000)
        self._accumulated += (arrival_delta - send_delta) * 1000.0
        self._smoothed = _SMOOTHING * self._smoothed + (1 - _SMOOTHING) * self._accumulated
        self._points.append(((group[2] - self._origin) * 1000.0, self._smoothed))
        previous_trend = self._trend
        if len(self._points) == _TRENDLINE_WINDOW:
            self._trend = _slope(self._points, self._trend)
        self._detect(previous_trend, send_delta * 1000.0, group[2] * 1000.0)

    def _detect(self, previous_trend: float, send_delta_ms: float, now_ms: float) -> None:
        modified = min(self._deltas, 60) * self._trend * _THRESHOLD_GAIN
        if modified > self._threshold:
            if self._overuse_ms < 0:
                self._overuse_ms = send_delta_ms / 2
            else:
                self._overuse_ms += send_delta_ms
            self._overuse_count += 1
            if self._overuse_ms > 10.0 and self._overuse_count > 1:
                if self._trend >= previous_trend:
                    self._overuse_ms = 0.0
                    self._overuse_count = 0
                    self.state = _OVERUSE
        elif modified < -self._threshold:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self.state = _UNDERUSE
        else:
            self._overuse_ms = -1.0
            self._overuse_count = 0
            self.state = _NORMAL
        self._adapt_threshold(modified, now_ms)

    def _adapt_threshold(self, modified: float, now_ms: float) -> None:
        # Slow to rise, quicker to fall, so the detector neither starves against a competing
        # TCP flow nor ignores a real queue (gcc-02 section 5.4).
        if self._last_threshold_update is None:
            self._last_threshold_update = now_ms
        if abs(modified) > self._threshold + 15.0:
            self._last_threshold_update = now_ms
            return
        k = 0.039 if abs(modified) < self._threshold else 0.0087
        elapsed = min(max(now_ms - self._last_threshold_update, 0.0), 100.0)
        self._threshold += k * (abs(modified) - self._threshold) * elapsed
        self._threshold = min(max(self._threshold, 6.0), 600.0)
        self._last_threshold_update = now_ms


def _slope(points: Collection[tuple[float, float]], default: float) -> float:
    """Least-squares slope of ``points``; ``default`` when they all share one x."""
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    if den == 0:
        return default
    return sum((x - mx) * (y - my) for x, y in points) / den


class _AckedRate:
    """Throughput the receiver acknowledged over the last ``window`` seconds of arrivals."""

    def __init__(self, window: float = 0.5) -> None:
        self._window = window
        self._packets: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, arrival: float, size: int) -> None:
        if self._packets and abs(arrival - self._packets[-1][0]) > 3.0:
            self._packets.clear()  # a clock jump: start over
            self._bytes = 0
        self._packets.append((arrival, size))
        self._bytes += size
        while self._packets and self._packets[0][0] < arrival - self._window:
            self._bytes -= self._packets.popleft()[1]

    def bps(self) -> float | None:
        if len(self._packets) < 5:
            return None
        span = self._packets[-1][0] - self._packets[0][0]
        if span < self._window / 4:
            return None
        return (self._bytes - self._packets[0][1]) * 8 / span


class _LinkCapacity:
    """Where the last congestion happened: a running mean and variance of the acknowledged
    rate at each overuse (libwebrtc's link capacity estimate), in kbit/s."""

    def __init__(self) -> None:
        self.mean: float | None = None
        self._var = 0.4

    def _band(self) -> float:
        # Three deviations, but at least 10 %: our acknowledged rate is a plain sliding
        # window, noisier than libwebrtc's, and a band too narrow resets on noise.
        mean = self.mean or 0.0
        return max(3 * math.sqrt(self._var * mean), 0.1 * mean)

    def upper(self) -> float:
        return (self.mean or 0.0) + self._band()

    def lower(self) -> float:
        return (self.mean or 0.0) - self._band()

    def on_overuse(self, acked_kbps: float) -> None:
        if self.mean is None:
            self.mean = acked_kbps
        else:
            self.mean = 0.95 * self.mean + 0.05 * acked_kbps
        error = self.mean - acked_kbps
        self._var = min(
            max(0.95 * self._var + 0.05 * error * error / max(self.mean, 1.0), 0.4), 2.5
        )

    def reset(self) -> None:
        self.mean = None


class BandwidthEstimator:
    """The send-side bandwidth estimate of one subscriber's down connection."""

    PROBE_MIN_PACKETS = 5

    def __init__(
        self,
        initial_bps: int = 1_000_000,
        min_bps: int = 100_000,
        max_bps: int = 20_000_000,
        fallback_bps: int = 300_000,
        clock: Callable[[], float] = time.monotonic,
        probe_duration: float = 0.1,
    ) -> None:
        if not 0 < min_bps <= initial_bps <= max_bps:
            raise ValueError(
                f"BandwidthEstimator needs 0 < min_bps ({min_bps}) <= initial_bps"
                f" ({initial_bps}) <= max_bps ({max_bps})"
            )
        if not min_bps <= fallback_bps <= max_bps:
            raise ValueError(f"fallback_bps {fallback_bps} is outside [{min_bps}, {max_bps}]")
        if not 0 < probe_duration <= 1.0:
            raise ValueError(f"probe_duration {probe_duration} is not in (0, 1] seconds")
        self.min_bps, self.max_bps, self.fallback_bps = min_bps, max_bps, fallback_bps
        self.probe_duration = probe_duration
        self.probe_seconds = probe_duration  # how long the probe last asked for lasts
        self.delay_decreases = 0  # counters, for logs and benchmarks
        self.loss_decreases = 0
        self._clock = clock
        self._detector = _DelayDetector()
        self._acked = _AckedRate()
        self._capacity = _LinkCapacity()
        self._delay_bps = float(initial_bps)  # the AIMD controller's rate
        self._loss_bps = float(initial_bps)
        self._aimd_state = "hold"
        self._last_aimd: float | None = None
        self._last_decrease = -math.inf
        self._rtt_samples: deque[float] = deque(maxlen=30)
        self._lost = self._counted = 0
        self._loss_window_start: float | None = None
        self._last_loss_update: float | None = None
        self._last_loss_decrease = -math.inf
        self._last_overuse = -math.inf
        self._high_loss_since: float | None = None
        self.loss_fraction = 0.0
        self._demand: float | None = None
        self._started = clock()
        self._last_feedback: float | None = None
        self._quiet_until = -math.inf  # the last time we were told nothing was being sent
        self._last_timeout_cut = -math.inf
        # Probing.
        self._probe_started: float | None = None  # the cluster in flight
        self._probe_packets: list[PacketResult] = []
        self._last_probe = -math.inf
        self._probe_interval = 3.0
        self._last_drop = -math.inf
        self._peak = (float(initial_bps), self._started)  # the highest recent estimate, when

    # Inputs.

    def set_demand(self, bps: int) -> None:
        """What the allocator would send if it could; the estimate grows no further than
        1.5 × this without a probe."""
        if bps < 0:
            raise ValueError(f"demand {bps} bit/s is negative")
        self._demand = float(bps)

    def on_results(self, results: list[PacketResult]) -> None:
        """Feed what one feedback packet said about sent packets."""
        if not results:
            return
        now = self._clock()
        self._last_feedback = now
        self._rtt_samples.append(max(0.0, now - max(r.send_time for r in results)))
        before = self.estimate
        for r in sorted(results, key=lambda r: r.seq):
            self._counted += 1
            if r.probe and self._probe_started is not None and r.send_time >= self._probe_started:
                self._probe_packets.append(r)
            if r.arrival_time is None:
                self._lost += 1
                continue
            self._acked.add(r.arrival_time, r.size)
            self._detector.add(r.send_time, r.arrival_time)
        self._update_delay_based(now)
        self._update_loss_based(now)
        self._evaluate_probe(now)
        self._cap_to_demand(before)
        self._note_drop(now)

    def tick(self, now: float, sending: bool = True) -> None:
        """Called every 50–100 ms. Without feedback for a second while sending, halve the
        estimate (not below ``fallback_bps``) once per second."""
        if not sending:
            self._quiet_until = now
            return
        since = max(self._last_feedback or self._started, self._quiet_until)
        if now - since >= 1.0 and now - self._last_timeout_cut >= 1.0:
            self._last_timeout_cut = now
            current = self.estimate
            if current > self.fallback_bps:
                cut = max(float(self.fallback_bps), current / 2)
                self._delay_bps = min(self._delay_bps, cut)
                self._loss_bps = min(self._loss_bps, cut)
        if self._probe_started is not None and now - self._probe_started > 3.0:
            self._probe_started = None  # its feedback never came
            self._probe_packets = []

    # Outputs.

    @property
    def estimate(self) -> int:
        bps = min(self._delay_bps, self._loss_bps)
        return int(min(max(bps, self.min_bps), self.max_bps))

    @property
    def rtt(self) -> float:
        """Round trip plus feedback delay, from send time to its feedback (seconds)."""
        return min(self._rtt_samples) if self._rtt_samples else 0.2

    @property
    def delay_state(self) -> str:
        return self._detector.state

    def probe_target(self, now: float) -> int | None:
        """A rate (bit/s) to send at for ``probe_seconds`` seconds from now (at least
        ``probe_duration``), flagging the packets ``probe``; None when no probe is wanted."""
        if self._last_feedback is None or self._probe_started is not None:
            return None
        estimate = self.estimate
        if estimate >= self.max_bps or self._detector.state != _NORMAL:
            return None
        if self.loss_fraction > 0.02 or now - self._last_loss_decrease < 1.0:
            return None
        first = self._last_probe == -math.inf
        wanted = self._demand if self._demand is not None else float(self.max_bps)
        if not first and wanted <= 1.1 * estimate:
            return None
        interval = 1.0 if self._last_drop > self._last_probe else self._probe_interval
        if now - self._last_probe < interval:
            return None
        self._last_probe = now
        self._probe_started = now
        self._probe_packets = []
        rate = int(min(2 * estimate, self.max_bps))
        # Long enough to carry a dozen packets: at the floor's 100 kbit/s, 0.1 s would be two,
        # too few to judge, and an estimate at the floor would never leave it.
        self.probe_seconds = max(self.probe_duration, _PROBE_MIN_BYTES * 8 / rate)
        return rate

    # The parts.

    def _update_delay_based(self, now: float) -> None:
        state = self._detector.state
        if state == _OVERUSE:
            self._last_overuse = now
            self._aimd_state = "decrease"
        elif state == _UNDERUSE:
            self._aimd_state = "hold"
        elif self._aimd_state == "hold":
            self._aimd_state = "increase"
        dt = 0.0 if self._last_aimd is None else min(max(now - self._last_aimd, 0.0), 1.0)
        self._last_aimd = now
        acked = self._acked.bps()
        if self._aimd_state == "increase":
            self._increase(dt, acked)
        elif self._aimd_state == "decrease":
            self._decrease(now, acked)

    def _increase(self, dt: float, acked: float | None) -> None:
        rate = self._delay_bps
        if acked is not None and acked / 1000 > self._capacity.upper():
            self._capacity.reset()  # the link carries more than where it congested last
        if self._capacity.mean is not None:
            # Near the last congestion point: about one packet more per response time.
            response = self.rtt + 0.1
            frame_bits = rate / 30
            packet_bits = frame_bits / math.ceil(frame_bits / (1200 * 8))
            new = rate + max(1000.0, packet_bits / response) * dt
        else:
            new = rate + max(1000.0 * dt, rate * (1.08**dt - 1))
        if acked is not None:
            new = min(
                new, max(rate, 1.5 * acked + 10_000)
            )  # do not run away from what gets through
        self._delay_bps = min(new, self.max_bps)

    def _decrease(self, now: float, acked: float | None) -> None:
        self._aimd_state = "hold"
        # Once per round trip, unless the estimate is far above what gets through.
        interval = min(max(self.rtt, 0.01), 0.2)
        if now - self._last_decrease < interval and (acked is None or self._delay_bps < 2 * acked):
            return
        self._last_decrease = now
        self.delay_decreases += 1
        if acked is None:
            new = _BETA * self._delay_bps
        else:
            if acked / 1000 < self._capacity.lower():
                self._capacity.reset()  # congested far below the last point: the link changed
            self._capacity.on_overuse(acked / 1000)
            # Down to what got through, but at most _MAX_STEP_DOWN of the estimate at a time:
            # an SFU's subscriber is often sent far less than its estimate (paused tracks),
            # and one overuse must not take the estimate down to that.
            new = max(_BETA * acked, _MAX_STEP_DOWN * self._delay_bps)
        self._delay_bps = max(min(new, self._delay_bps), float(self.min_bps))

    def _update_loss_based(self, now: float) -> None:
        if self._loss_window_start is None:
            self._loss_window_start = now
        if self._counted < 20 or (self._counted < 50 and now - self._loss_window_start < 1.0):
            return
        loss = self._lost / self._counted
        self.loss_fraction = loss
        self._lost = self._counted = 0
        self._loss_window_start = now
        last, self._last_loss_update = self._last_loss_update, now
        if loss > 0.10:
            if self._high_loss_since is None:
                self._high_loss_since = now
            # Loss is congestion when the queue grew before it (an overuse lately) or when it
            # lasts (a shallow queue that overflows before its delay shows). Loss alone for a
            # few seconds, the delay flat, is the link's own (radio, a long lossy path): sending
            # less would not lower it, and the tiles paused for it would come back seconds late.
            congested = (
                now - self._last_overuse <= _CONGESTION_MEMORY
                or now - self._high_loss_since >= _RANDOM_LOSS_GRACE
            )
            if congested and now - self._last_loss_decrease >= self.rtt + 0.3:
                self._last_loss_decrease = now
                self.loss_decreases += 1
                self._loss_bps = min(self._loss_bps, self.estimate) * (1 - 0.5 * loss)
                self._loss_bps = max(self._loss_bps, float(self.min_bps))
            return
        self._high_loss_since = None
        if loss < 0.02 and last is not None:
            dt = min(max(now - last, 0.0), 1.0)
            self._loss_bps = min(self._loss_bps * 1.08**dt + 1000 * dt, float(self.max_bps))
            # Loss alone never holds the estimate far above what the delay side allows.
            self._loss_bps = min(self._loss_bps, max(self._delay_bps * 2, self.estimate))

    def _evaluate_probe(self, now: float) -> None:
        started = self._probe_started
        if started is None or now < started + self.probe_seconds + self.rtt + 0.1:
            return
        packets, self._probe_packets, self._probe_started = self._probe_packets, [], None
        received = [r for r in packets if r.arrival_time is not None]
        rate = None
        if len(received) >= self.PROBE_MIN_PACKETS and len(received) >= 0.9 * len(packets):
            rate = _probe_rate(received)
        if rate is None or self._last_decrease >= started or rate <= self.estimate * 1.05:
            # Backing off, but not for long: an SFU's subscriber is app-limited most of the
            # time (it is sent what the estimate allows, no more), and only a probe lifts an
            # estimate that a false overuse left low; libwebrtc probes in that state every 5 s.
            self._probe_interval = min(self._probe_interval * 2, _MAX_PROBE_INTERVAL)
            return
        self._probe_interval = 3.0
        if rate / 1000 > self._capacity.upper():
            self._capacity.reset()
        self._delay_bps = max(self._delay_bps, min(rate, self.max_bps))
        self._loss_bps = max(self._loss_bps, min(rate, self.max_bps))

    def _note_drop(self, now: float) -> None:
        """A drop is the estimate falling below 70 % of its peak of the last 3 s (the AIMD
        sawtooth alone, 0.85 per overuse, is not one)."""
        estimate = float(self.estimate)
        peak, at = self._peak
        if estimate >= peak or now - at > 3.0:
            self._peak = (estimate, now)
        elif estimate < 0.7 * peak:
            self._last_drop = now
            self._peak = (estimate, now)

    def _cap_to_demand(self, before: int) -> None:
        if self._demand is None:
            return
        cap = max(1.5 * self._demand, float(self.min_bps), float(before))
        self._delay_bps = min(self._delay_bps, cap)
        self._loss_bps = min(self._loss_bps, cap)


def _probe_rate(received: list[PacketResult]) -> float | None:
    """The rate a probe got through at: the lower of its send and receive rates, and 95 % of
    the receive rate when the link visibly could not keep up (receive < 90 % of send)."""
    by_send = sorted(received, key=lambda r: r.send_time)
    by_arrival = sorted(received, key=lambda r: r.arrival_time or 0.0)
    send_span = by_send[-1].send_time - by_send[0].send_time
    arrival_span = (by_arrival[-1].arrival_time or 0.0) - (by_arrival[0].arrival_time or 0.0)
    if send_span <= 0 or arrival_span <= 0:
        return None
    total = sum(r.size for r in received)
    send_bps = (total - by_send[-1].size) * 8 / send_span
    receive_bps = (total - by_arrival[0].size) * 8 / arrival_span
    if receive_bps < 0.9 * send_bps:
        return 0.95 * receive_bps
    return min(send_bps, receive_bps)
