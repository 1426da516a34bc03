"""Downlink: a subscriber's down connection as one stream of packets that is numbered, paced,
protected and written, and the bandwidth estimate that stream earns.

Every down-track of a subscriber sends through its down connection's ``Downlink``. Where the
subscriber's answer took transport-wide congestion control (a browser does; an aiortc peer does
not), each packet carries a transport-wide sequence number, the browser's feedback says when
each arrived, and a delay-and-loss controller (``estimator``) turns that into an estimate; the
pacer then sends no faster than the estimate allows, audio first, and the room's allocator
shares the estimate out among the subscriber's tracks. Without transport-cc there is no
feedback to estimate from: packets go out as they come, as they did before (a LAN peer).

Besides ``forwarder``, this is the one module that touches aiortc's internals (the DTLS
transport's SRTP context, its RTCP entry point and aioice's nominated pair; the list is kept by
``tests/media/test_aiortc_contract.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

import pylibsrtp
from aioice.ice import StunProtocol

from .estimator import BandwidthEstimator
from .pacer import Pacer
from .sfu import MediaError
from .twcc import SendHistory, is_twcc, parse_feedback, split_compound

__all__ = ["Downlink", "TWCC_OFFSET"]

logger = logging.getLogger(__name__)

TWCC_OFFSET = 17  # the transport-wide sequence number: first extension after the 0xBEDE word
INITIAL_BPS = 1_000_000  # until the first feedback: a board's stage and audio fit
FALLBACK_BPS = 300_000  # a subscriber whose feedback stopped: audio and a low layer
MAX_BPS = 20_000_000
_TICK = 0.005  # pacer interval, seconds
_MAX_PADDING_PER_TICK = 16


class Downlink:
    """One subscriber's down connection at the packet level."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._srtp: Any = None
        self._ice: Any = None
        self._dtls: Any = None
        self.twcc_id: int | None = None
        self._twcc_seq = 0
        self.history: SendHistory | None = None
        self.estimator: BandwidthEstimator | None = None
        self.pacer: Pacer | None = None
        self._priorities: dict[Hashable, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False
        self.feedback_packets = 0
        self.feedback_refused = 0
        self.bytes_sent = 0
        self.on_video_dropped: Callable[[Hashable], None] | None = None
        # Probing: a padding-only packet (a video down-track's RTX), None if there is none.
        self.padder: Callable[[], bytes | None] | None = None
        self._probe_until: float | None = None
        self._probe_bps = 0
        self._probe_start = 0.0
        self._probe_sent_before = 0
        self._last_tick = -float("inf")
        self._last_log = -float("inf")
        self._first_sent: float | None = None
        self.probes = 0

    @property
    def estimate(self) -> int | None:
        """The subscriber's estimated bandwidth in bit/s; None without transport-cc."""
        return self.estimator.estimate if self.estimator is not None else None

    def bind(self, dtls: Any) -> None:
        """Send through ``dtls`` (an RTCDtlsTransport, connected); see its feedback."""
        if self._dtls is dtls:
            return
        self._dtls = dtls
        self._srtp = dtls._tx_srtp
        self._ice = dtls.transport._connection
        original = dtls._handle_rtcp_data

        async def handle_rtcp_data(data: bytes) -> None:
            # aiortc reads any RTPFB as a NACK and refuses a padded transport-cc feedback,
            # dropping the whole compound packet with it: feedback is taken out here, the rest
            # (receiver reports, NACK, PLI) goes on to aiortc.
            try:
                parts = split_compound(data)
            except ValueError:
                await original(data)
                return
            rest = [part for part in parts if not is_twcc(part)]
            if len(rest) < len(parts):
                self._feedback([part for part in parts if is_twcc(part)])
            if rest:
                await original(b"".join(rest))

        dtls._handle_rtcp_data = handle_rtcp_data

    def use_transport_cc(self, ext_id: int | None) -> None:
        """The answer took transport-cc with header extension ``ext_id`` (None: it did not)."""
        if ext_id == self.twcc_id or self._closed:
            return
        self.twcc_id = ext_id
        if ext_id is None or self.history is not None:
            return
        self.history = SendHistory()
        self.estimator = BandwidthEstimator(
            initial_bps=INITIAL_BPS,
            min_bps=FALLBACK_BPS // 3,
            max_bps=MAX_BPS,
            fallback_bps=FALLBACK_BPS,
            clock=self._clock,
        )
        self.pacer = Pacer(
            self._emit,
            clock=self._clock,
            rate_bps=INITIAL_BPS,
            on_video_dropped=self._video_dropped,
        )
        self.pacer.set_priorities(self._priorities)
        self._task = asyncio.ensure_future(self._run())

    def send(self, data: bytes, kind: str, created: float, stream: Hashable = None) -> None:
        """Send one plain RTP packet of ``kind`` ("audio", "video", "rtx") of ``stream`` (its
        down-track, told back if the pacer had to drop its video)."""
        if self.pacer is not None:
            try:
                self.pacer.enqueue(data, kind, created, stream)  # type: ignore[arg-type]
            except MediaError as exc:  # a packet the pacer cannot take: not worth a failure
                logger.debug("Downlink packet refused: %s", exc)
        else:
            self._emit(data, kind)

    @property
    def priorities(self) -> dict[Hashable, int]:
        return dict(self._priorities)

    def set_priorities(self, order: dict[Hashable, int]) -> None:
        """Each video down-track's rank (lower: more important): what the pacer sheds first
        when the link falls behind."""
        self._priorities = order  # the pacer keeps its own copy
        if self.pacer is not None:
            self.pacer.set_priorities(self._priorities)

    def set_demand(self, bps: int) -> None:
        """What the allocator would send with no limit: the estimate probes above it only."""
        if self.estimator is not None:
            self.estimator.set_demand(bps)

    def _emit(self, data: bytes, kind: str) -> None:
        ext = self.twcc_id
        if (
            ext is not None
            and self.history is not None
            and len(data) > TWCC_OFFSET + 2
            and data[12] == 0xBE
            and data[16] == (ext << 4) | 1
        ):
            seq = self._twcc_seq
            self._twcc_seq = (seq + 1) & 0xFFFF
            data = data[:TWCC_OFFSET] + seq.to_bytes(2, "big") + data[TWCC_OFFSET + 2 :]
            now = self._clock()
            self.history.on_sent(seq, len(data), now, self._probe_until is not None)
            if self._first_sent is None:
                self._first_sent = now
        self._write(data)

    def _write(self, data: bytes) -> None:
        ice = self._ice
        if ice is None:
            return
        pair = ice._nominated.get(1)
        if pair is None:
            return
        try:
            protected = self._srtp.protect(data)
        except pylibsrtp.Error as exc:
            logger.debug("Downlink SRTP protect failed: %s", exc)
            return
        self.bytes_sent += len(protected)
        protocol = pair.protocol
        if isinstance(protocol, StunProtocol):
            if protocol.transport is not None:
                protocol.transport.sendto(protected, pair.remote_addr)
        else:  # through a TURN relay: its client frames and may wait for a channel
            task = asyncio.ensure_future(protocol.send_data(protected, pair.remote_addr))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _feedback(self, parts: list[bytes]) -> None:
        history, estimator = self.history, self.estimator
        if history is None or estimator is None:
            return
        for part in parts:
            try:
                feedback = parse_feedback(part)
            except ValueError as exc:
                self.feedback_refused += 1
                logger.debug("Downlink transport-cc feedback refused: %s", exc)
                continue
            self.feedback_packets += 1
            estimator.on_results(history.on_feedback(feedback))

    def _video_dropped(self, stream: Hashable) -> None:
        if self.on_video_dropped is not None:
            self.on_video_dropped(stream)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            try:
                self.step(self._clock())
            except Exception:  # one subscriber's bad packet must not stop its link
                logger.exception("Downlink pacer failed")

    def step(self, now: float) -> None:
        """One pacer interval: every 50 ms the estimate is brought up to date (and a probe
        maybe started), then the pacer sends what the rate allows."""
        pacer, estimator = self.pacer, self.estimator
        if pacer is None or estimator is None:
            return
        if now - self._last_tick >= 0.05:
            self._last_tick = now
            # Feedback is missed only from the first packet on (ICE and DTLS take a while).
            estimator.tick(now, sending=self._first_sent is not None)
            if now - self._last_log >= 1.0:
                self._last_log = now
                logger.debug(
                    "Downlink estimate %d bit/s (%s, loss %.3f, rtt %.3f s; decreases: delay %d,"
                    " loss %d; probes %d; pacer queue %d ms, dropped video %d, rtx %d)",
                    estimator.estimate,
                    estimator.delay_state,
                    estimator.loss_fraction,
                    estimator.rtt,
                    estimator.delay_decreases,
                    estimator.loss_decreases,
                    self.probes,
                    pacer.queue_ms,
                    pacer.dropped_video,
                    pacer.dropped_rtx,
                )
            if self._probe_until is None:
                pacer.set_rate(estimator.estimate)
                self._start_probe(now)
        if self._probe_until is not None:
            self._probe(now)
        pacer.poll(now)

    def _start_probe(self, now: float) -> None:
        """Find room again after a drop: send at the estimator's probe rate for a moment,
        padding what the media does not fill."""
        estimator, pacer = self.estimator, self.pacer
        assert estimator is not None and pacer is not None
        if self.padder is None:
            return
        target = estimator.probe_target(now)
        if target is None:
            return
        self.probes += 1
        self._probe_until = now + estimator.probe_seconds
        self._probe_start = now
        self._probe_sent_before = pacer.bytes_sent
        self._probe_bps = target
        pacer.set_rate(target)

    def _probe(self, now: float) -> None:
        """Fill the probe up to its rate, no more: a probe sent faster than asked fills the
        link's queue by itself, and the delay it causes would refute it."""
        pacer = self.pacer
        assert pacer is not None and self._probe_until is not None
        if now >= self._probe_until:
            self._probe_until = None
            return
        due = self._probe_bps * (now - self._probe_start + _TICK) / 8
        missing = due - (pacer.bytes_sent - self._probe_sent_before) - pacer.queued_bytes
        for _ in range(_MAX_PADDING_PER_TICK):
            if missing <= 0 or self.padder is None:
                break
            packet = self.padder()
            if packet is None:
                break
            pacer.enqueue(packet, "padding", now)
            missing -= len(packet)

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for task in list(self._pending):
            task.cancel()
