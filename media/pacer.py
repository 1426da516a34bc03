"""Pacer: puts one subscriber's packets on the wire at the pace its link can take.

Without it every packet of a keyframe leaves the SFU in the same millisecond and a thin link's
bottleneck queue drops the tail. The pacer holds retransmissions, video and padding in queues
and lets them out through a token bucket, in priority order: retransmissions (a receiver is
waiting for them), then video, then padding (probing). Audio is never queued: it is sent the
moment it is enqueued, ahead of everything, and its bytes are charged to the bucket afterwards,
so video yields to it but it never waits for video.

Pacing rate: the bucket fills at ``pacing_factor`` times the target rate (the send-side
estimate), 1.5 by default. The allocator already keeps what is forwarded under the estimate,
so the pacer only smooths bursts; pacing a little faster than the estimate (libwebrtc uses
2.5 for its own encoder) drains a keyframe within a frame interval or two instead of
stretching it over many, while the bottleneck's queue grows by at most a third of a burst.
The bucket holds at most ``burst`` seconds (10 ms) of the pacing rate, so after a quiet spell
no more than that leaves at once.

Retransmissions are refused at enqueue once they exceed ``rtx_share`` of the target rate
(:class:`RtxBudget`): a NACK storm costs this subscriber's link, nobody else's. A queued
retransmission older than ``max_age_rtx`` is dropped (it would arrive after the receiver gave
up on it). Video is bounded in packets and bytes. A dropped video packet makes the rest of its
stream useless until a keyframe, so the stream's other queued packets are dropped with it and
``on_video_dropped(stream)`` is called once, for the owner to ask that down-track's publisher
for a keyframe (and hold the down-track until it comes).

When the oldest queued video has waited ``max_age``, the link has fallen behind: whole streams
are shed, the least important first (``set_priorities``, from the allocator's ranking), until
what is left leaves within half of ``max_age``; the late packets of the streams kept then go
out next, late but whole. Dropping each stream whose packet reached the head late, as this
did before, dropped every stream at once on a thin link, and their keyframes, all asked for
together, filled the queue again: every tile froze for 2-3 s together. Past twice ``max_age``
the stream at the head is dropped whatever its rank.

Everything is driven by an injected clock: ``poll(now)`` sends what the budget allows; ``run``
calls it every few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Literal, NamedTuple

from .sfu import MediaError

__all__ = ["Pacer", "RtxBudget", "PacketKind"]

logger = logging.getLogger(__name__)

PacketKind = Literal["audio", "rtx", "video", "padding"]
_KINDS = ("audio", "rtx", "video", "padding")
MAX_PACKET = 1500  # bytes: one RTP packet in one UDP datagram
MAX_STREAMS = 1024  # stream priorities one pacer keeps (a room's down-tracks, with room to spare)
MAX_PRIORITY = 1 << 30  # the rank of a stream not named: the least important
MIN_RATE, MAX_RATE = 10_000, 10_000_000_000  # bit/s


def _check_rate(name: str, bps: object) -> int:
    if isinstance(bps, bool) or not isinstance(bps, int) or not MIN_RATE <= bps <= MAX_RATE:
        raise MediaError(
            f"{name} must be an integer in [{MIN_RATE}, {MAX_RATE}] bit/s, not {bps!r}"
        )
    return bps


def _check_seconds(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MediaError(f"{name} must be a number of seconds, not {value!r}")
    if not low <= value <= high:  # also refuses NaN
        raise MediaError(f"{name} must be in [{low}, {high}] s, not {value!r}")
    return float(value)


class RtxBudget:
    """A token bucket for retransmissions: ``share`` of the target rate, with up to ``window``
    seconds of it saved up for a burst of losses."""

    def __init__(self, rate_bps: int, *, share: float = 0.2, window: float = 0.5) -> None:
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise MediaError(f"rtx share must be in [0, 1], not {share!r}")
        self._share = float(share)
        self._window = _check_seconds("rtx window", window, 0.01, 10.0)
        self._rate = 0.0  # bytes per second
        self._tokens = 0.0
        self._last: float | None = None
        self.set_rate(rate_bps)
        self._tokens = self._capacity

    @property
    def _capacity(self) -> float:
        return max(self._rate * self._window, float(MAX_PACKET) if self._share else 0.0)

    def set_rate(self, rate_bps: int) -> None:
        """Follow a new target rate (bit/s)."""
        self._rate = _check_rate("rate_bps", rate_bps) * self._share / 8
        self._tokens = min(self._tokens, self._capacity)

    def allow(self, size: int, now: float) -> bool:
        """Whether a retransmission of ``size`` bytes fits now; if so it is charged."""
        if self._last is not None:
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now if self._last is None else max(now, self._last)
        if self._tokens < size:
            return False
        self._tokens -= size
        return True


class _Queued(NamedTuple):
    data: bytes
    created: float
    stream: Hashable


class Pacer:
    """Paces one subscriber connection's packets; ``emit(data, kind)`` puts one on the wire."""

    def __init__(
        self,
        emit: Callable[[bytes, str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        rate_bps: int = 300_000,
        pacing_factor: float = 1.5,
        burst: float = 0.010,
        max_queue: int = 512,
        max_queue_bytes: int = 512 * 1024,
        max_age: float = 0.5,
        max_age_rtx: float = 0.4,
        rtx_share: float = 0.2,
        max_rtx_queue: int = 256,
        max_padding_queue: int = 64,
        on_video_dropped: Callable[[Hashable], None] | None = None,
    ) -> None:
        if (
            isinstance(pacing_factor, bool)
            or not isinstance(pacing_factor, int | float)
            or not 1.0 <= pacing_factor <= 5.0
        ):
            raise MediaError(f"pacing_factor must be in [1, 5], not {pacing_factor!r}")
        for name, count in (
            ("max_queue", max_queue),
            ("max_queue_bytes", max_queue_bytes),
            ("max_rtx_queue", max_rtx_queue),
            ("max_padding_queue", max_padding_queue),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1 << 24:
                raise MediaError(f"{name} must be an integer in [1, {1 << 24}], not {count!r}")
        self._emit = emit
        self._clock = clock
        self._factor = float(pacing_factor)
        self._burst = _check_seconds("burst", burst, 0.001, 0.1)
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._max_age = _check_seconds("max_age", max_age, 0.01, 10.0)
        self._max_age_rtx = _check_seconds("max_age_rtx", max_age_rtx, 0.01, 10.0)
        self._max_rtx_queue = max_rtx_queue
        self._max_padding_queue = max_padding_queue
        self._on_video_dropped = on_video_dropped
        self._priorities: dict[Hashable, int] = {}
        self._rtx_budget = RtxBudget(rate_bps, share=rtx_share)
        self._queues: dict[str, deque[_Queued]] = {k: deque() for k in ("rtx", "video", "padding")}
        self._queued_bytes = 0
        self._video_bytes = 0
        self._rate = 0.0  # pacing rate, bytes per second
        self.set_rate(rate_bps)
        self._tokens = self._capacity
        self._last = clock()
        self._stopped: asyncio.Event | None = None
        self.bytes_sent = 0
        self.packets_sent = 0
        self.dropped_rtx = 0
        self.dropped_video = 0
        self.dropped_padding = 0

    # Settings.

    @property
    def rate_bps(self) -> int:
        """The pacing rate: the target times the pacing factor."""
        return round(self._rate * 8)

    def set_rate(self, bps: int) -> None:
        """Follow a new target rate (bit/s), usually the send-side estimate."""
        self._rate = _check_rate("rate_bps", bps) * self._factor / 8
        self._rtx_budget.set_rate(bps)

    def set_priorities(self, order: dict[Hashable, int]) -> None:
        """How important each video stream is (lower: more important; a stream not named is
        the least important): what is shed first when the link falls behind."""
        if len(order) > MAX_STREAMS:
            raise MediaError(f"at most {MAX_STREAMS} stream priorities, not {len(order)}")
        self._priorities = dict(order)

    def set_rtt(self, rtt: float) -> None:
        """Keep retransmissions for twice the round-trip time (within 0.1 to 1 s)."""
        rtt = _check_seconds("rtt", rtt, 0.0, 60.0)
        self._max_age_rtx = min(max(2 * rtt, 0.1), 1.0)

    @property
    def _capacity(self) -> float:
        return max(self._rate * self._burst, float(MAX_PACKET))

    # Counters.

    @property
    def queued_packets(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def queue_ms(self) -> float:
        """How long the queued packets take to leave at the pacing rate, in milliseconds."""
        return self._queued_bytes / self._rate * 1000

    # Packets in.

    def enqueue(
        self, data: bytes, kind: PacketKind, created: float, stream: Hashable = None
    ) -> bool:
        """Take one packet (``created``: when it was received or, for a retransmission, asked
        for; on the pacer's clock). Audio is sent at once. Returns whether it was accepted;
        a refused video packet counts as dropped (``on_video_dropped`` is called)."""
        if not isinstance(data, bytes):
            raise MediaError(f"a packet must be bytes, not {type(data).__name__}")
        if not 0 < len(data) <= MAX_PACKET:
            raise MediaError(f"a packet must be 1 to {MAX_PACKET} bytes, not {len(data)}")
        if kind not in _KINDS:
            raise MediaError(f"packet kind must be one of {', '.join(_KINDS)}, not {kind!r}")
        if isinstance(created, bool) or not isinstance(created, int | float):
            raise MediaError(f"created must be a time on the pacer's clock, not {created!r}")
        if not math.isfinite(created):
            raise MediaError(f"created must be finite, not {created!r}")
        if kind == "audio":
            self._refill(self._clock())
            self._send(data, kind)
            return True
        if kind == "rtx":
            queue = self._queues["rtx"]
            if len(queue) >= self._max_rtx_queue or not self._rtx_budget.allow(
                len(data), self._clock()
            ):
                self.dropped_rtx += 1
                return False
        elif kind == "padding":
            if len(self._queues["padding"]) >= self._max_padding_queue:
                self.dropped_padding += 1
                return False
        elif (
            len(self._queues["video"]) >= self._max_queue
            or self._video_bytes + len(data) > self._max_queue_bytes
        ):
            self.dropped_video += 1
            self._drop_stream(stream)
            return False
        self._queues[kind].append(_Queued(data, float(created), stream))
        self._queued_bytes += len(data)
        if kind == "video":
            self._video_bytes += len(data)
        return True

    # Packets out.

    def poll(self, now: float | None = None) -> int:
        """Send what the budget allows at ``now`` (default: the clock); returns packets sent."""
        now = self._clock() if now is None else now
        self._refill(now)
        self._expire(now)
        sent = 0
        while self._tokens > 0:
            for kind in ("rtx", "video", "padding"):
                queue = self._queues[kind]
                if queue:
                    item = queue.popleft()
                    self._queued_bytes -= len(item.data)
                    if kind == "video":
                        self._video_bytes -= len(item.data)
                    self._send(item.data, kind)
                    sent += 1
                    break
            else:
                break
        return sent

    async def run(self, interval: float = 0.005) -> None:
        """Poll every ``interval`` seconds until :meth:`stop`."""
        interval = _check_seconds("interval", interval, 0.001, 1.0)
        self._stopped = stopped = asyncio.Event()
        while not stopped.is_set():
            self.poll()
            await asyncio.sleep(interval)

    def stop(self) -> None:
        """End a running :meth:`run` within one interval; queued packets stay (``poll`` may
        still send them)."""
        if self._stopped is not None:
            self._stopped.set()

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
            self._last = now

    def _send(self, data: bytes, kind: str) -> None:
        # Audio may push the bucket into debt (video then waits for it), at most half a
        # second's worth, so an overload of audio cannot starve video for longer.
        self._tokens = max(self._tokens - len(data), -self._rate * 0.5)
        self.bytes_sent += len(data)
        self.packets_sent += 1
        try:
            self._emit(data, kind)
        except Exception:  # the owner's sink failing must not wedge the queues
            logger.exception("Pacer emit failed for a %s packet", kind)

    def _expire(self, now: float) -> None:
        rtx = self._queues["rtx"]
        while rtx and now - rtx[0].created > self._max_age_rtx:
            self._queued_bytes -= len(rtx.popleft().data)
            self.dropped_rtx += 1
        video = self._queues["video"]
        if video and now - video[0].created > self._max_age:
            self._shed(now)
        padding = self._queues["padding"]
        while padding and now - padding[0].created > self._max_age:
            self._queued_bytes -= len(padding.popleft().data)
            self.dropped_padding += 1

    def _shed(self, now: float) -> None:
        """Drop whole video streams, least important first, until the queue drains within half
        of ``max_age`` and its head is younger than twice ``max_age``. Called every poll while
        the head is late, so it sorts nothing unless something must go."""

        def enough() -> bool:
            video = self._queues["video"]  # re-read: dropping a stream replaces the queue
            return not video or (
                self._queued_bytes / self._rate <= self._max_age / 2
                and now - video[0].created <= 2 * self._max_age
            )

        if enough():
            return
        streams = {item.stream for item in self._queues["video"]}
        order = sorted(streams, key=lambda s: self._priorities.get(s, MAX_PRIORITY), reverse=True)
        for stream in order:
            if enough():
                return
            self._drop_stream(stream)
        # Only streams without a key (None) are left: they go packet by packet.
        video = self._queues["video"]
        while video and now - video[0].created > self._max_age:
            item = video.popleft()
            self._queued_bytes -= len(item.data)
            self._video_bytes -= len(item.data)
            self.dropped_video += 1

    def _drop_stream(self, stream: Hashable) -> None:
        """Drop the queued video of ``stream`` (useless without the lost packet) and tell the
        owner once. Without a stream key only the one packet went."""
        if stream is None:
            return
        video = self._queues["video"]
        kept = deque(item for item in video if item.stream != stream)
        for item in video:
            if item.stream == stream:
                self._queued_bytes -= len(item.data)
                self._video_bytes -= len(item.data)
                self.dropped_video += 1
        self._queues["video"] = kept
        if self._on_video_dropped is not None:
            try:
                self._on_video_dropped(stream)
            except Exception:
                logger.exception("Pacer on_video_dropped failed")
