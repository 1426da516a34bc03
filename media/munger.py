"""Munger: keeps one video down-track a single continuous RTP stream while the layer it carries
changes (simulcast switches) or stops and starts again (pauses).

Each simulcast layer is its own RTP stream with its own sequence numbers, timestamps and VP8
picture ids. A subscriber's decoder sees one stream, so every forwarded packet is renumbered:
a layer switch happens only on a keyframe of the new layer, and there sequence numbers go on by
+1, the timestamp advances by the wall-clock time since the last packet sent, and picture ids
and TL0PICIDX by one picture. Between switches the mapping is plain offset arithmetic, so
reordered and retransmitted packets land on the right numbers. A ring remembers where each down
sequence number came from, to answer the subscriber's NACKs. The ideas follow LiveKit's
RTPMunger and VP8 codec munger; this is our own smaller take (no temporal-layer filtering, no
padding).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .vp8 import PICTURE_ID_MOD, TL0PICIDX_MOD, Vp8Descriptor, parse_descriptor, rewrite

__all__ = ["Munger", "RING_SIZE", "RESYNC_GAP"]

RING_SIZE = 2048  # down sequence numbers remembered for NACKs (a power of two)
_RING_MASK = RING_SIZE - 1
# A forward jump this large within a layer is a publisher restart, not loss: libwebrtc's NACK
# list holds 1,000 packets and gives up on a bigger hole anyway, so wait for a keyframe and
# continue the numbering from there instead of leaving the hole in the down-track.
RESYNC_GAP = 1000


def _signed(delta: int, modulus: int) -> int:
    """``delta`` modulo ``modulus`` as the nearest signed distance."""
    delta %= modulus
    return delta - modulus if delta >= modulus >> 1 else delta


@dataclass(slots=True)
class _Run:
    """The stretch of the down-track fed by one layer since its switch keyframe. Extended
    numbers (``*_ext``) are unwrapped integers; offsets map them to the down-track."""

    layer: int
    up_start_ext: int
    up_highest_ext: int
    down_start_ext: int
    ts_offset: int
    pid_ext: int | None = None  # the newest up picture id, unwrapped
    pid_offset: int = 0
    tl0_ext: int | None = None
    tl0_offset: int = 0


@dataclass(slots=True)
class _Sent:
    """What one down sequence number carried: enough to send it again."""

    down_seq: int
    layer: int
    up_seq: int
    ts: int
    picture_id: int | None
    tl0picidx: int | None


class Munger:
    """Renumbers one down-track's packets across simulcast layer switches and pauses.

    ``current`` is the layer forwarded now (``None``: nothing is forwarded), ``target`` the one
    wanted (``None``: paused). While they differ, the current layer keeps flowing until the
    target's next keyframe; the caller should ask the publisher for that keyframe.
    """

    def __init__(
        self,
        *,
        clock_rate: int = 90000,
        initial_seq: int | None = None,
        initial_ts: int | None = None,
        initial_picture_id: int | None = None,
    ) -> None:
        self.current: int | None = None
        self.target: int | None = None
        self._clock_rate = clock_rate
        self._run: _Run | None = None
        self._next_down_ext = random.randrange(1 << 15) if initial_seq is None else initial_seq
        self._initial_ts = random.randrange(1 << 32) if initial_ts is None else initial_ts
        # None: the first run keeps the publisher's own picture ids (as LiveKit does); only
        # later runs are offset to follow on.
        self._initial_pid = initial_picture_id
        self._last_ts: int | None = None  # down timestamp of the newest packet sent
        self._last_sent_at = 0.0
        self._last_pid: int | None = None
        self._last_tl0: int | None = None
        self._ring: list[_Sent | None] = [None] * RING_SIZE
        self.packets_sent = 0
        self.frames_sent = 0
        self.switches = 0

    @property
    def waiting_keyframe(self) -> bool:
        """A keyframe of ``target`` is needed before the down-track can change or resume."""
        return self.target is not None and self.target != self.current

    def switch_to(self, layer: int) -> None:
        """Make ``layer`` the target: its next keyframe becomes the switch (or resume) point."""
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ValueError(f"simulcast layer must be a non-negative integer, not {layer!r}")
        self.target = layer

    def pause(self) -> None:
        """Stop forwarding now; ``switch_to`` resumes at the chosen layer's next keyframe."""
        self.target = None
        self.current = None
        self._run = None

    def rewrite(
        self,
        layer: int,
        seq: int,
        ts: int,
        payload: bytes,
        keyframe: bool,
        marker: bool,
        now: float,
        descriptor: Vp8Descriptor | None = None,
    ) -> tuple[int, int, bytes] | None:
        """Map one up packet of ``layer`` onto the down-track: ``(down seq, down timestamp,
        payload)``, or ``None`` when it must not be sent (another layer, before the switch
        keyframe, from before the switch, out of the window, a payload that does not parse).
        ``keyframe`` is the packet's keyframe start (``Vp8Descriptor.keyframe``); ``marker``
        its RTP marker (counts frames); ``now`` the wall clock in seconds; ``descriptor``
        the payload's, when the caller parsed it already (once for every down-track)."""
        if layer != self.current:
            if layer != self.target or not keyframe:
                return None
            if descriptor is None:
                try:
                    descriptor = parse_descriptor(payload)
                except ValueError:
                    return None
            self._start(layer, seq, ts, now)
        run = self._run
        assert run is not None
        up_ext = run.up_highest_ext + _signed(seq - run.up_highest_ext, 1 << 16)
        if up_ext < run.up_start_ext or run.up_highest_ext - up_ext >= RING_SIZE:
            return None  # from before this run, or too old to place
        if up_ext - run.up_highest_ext > RESYNC_GAP:
            self.current, self._run = None, None
            return self.rewrite(layer, seq, ts, payload, keyframe, marker, now, descriptor)
        if descriptor is None:
            try:
                descriptor = parse_descriptor(payload)
            except ValueError:
                return None
        newest = up_ext >= run.up_highest_ext
        run.up_highest_ext = max(run.up_highest_ext, up_ext)
        down_seq = (run.down_start_ext + up_ext - run.up_start_ext) & 0xFFFF
        down_ts = (ts + run.ts_offset) & 0xFFFFFFFF
        picture_id = self._picture_id(run, descriptor)
        tl0picidx = self._tl0picidx(run, descriptor)
        out = rewrite(payload, picture_id, tl0picidx, descriptor=descriptor)
        if newest:
            self._next_down_ext = run.down_start_ext + up_ext - run.up_start_ext + 1
            self._last_ts = down_ts
            self._last_sent_at = now
            if picture_id is not None:
                self._last_pid = picture_id
            if tl0picidx is not None:
                self._last_tl0 = tl0picidx
            self.frames_sent += marker
        self._ring[down_seq & _RING_MASK] = _Sent(
            down_seq, layer, seq, down_ts, picture_id, tl0picidx
        )
        self.packets_sent += 1
        return down_seq, down_ts, out

    def lookup(self, down_seq: int) -> tuple[int, int] | None:
        """``(layer, up seq)`` of a recently sent down sequence number, for a NACK."""
        sent = self._ring[down_seq & _RING_MASK]
        if sent is None or sent.down_seq != down_seq:
            return None
        return sent.layer, sent.up_seq

    def retransmission(self, down_seq: int, payload: bytes) -> tuple[int, bytes] | None:
        """``(down timestamp, payload)`` to send again as ``down_seq``: ``payload`` is the up
        packet that ``lookup`` named, rewritten as it was the first time."""
        sent = self._ring[down_seq & _RING_MASK]
        if sent is None or sent.down_seq != down_seq:
            return None
        try:
            return sent.ts, rewrite(payload, sent.picture_id, sent.tl0picidx)
        except ValueError:
            return None

    def _start(self, layer: int, seq: int, ts: int, now: float) -> None:
        """Begin a run of ``layer`` at its keyframe packet ``seq``/``ts``."""
        if self._last_ts is None:
            ts_offset = self._initial_ts - ts
        else:
            # The media clock runs on with the wall clock, by at least one tick: a new
            # picture must never share (or go back to) the previous picture's timestamp.
            advance = max(1, round((now - self._last_sent_at) * self._clock_rate))
            ts_offset = self._last_ts + advance - ts
        self._run = _Run(
            layer=layer,
            up_start_ext=seq,
            up_highest_ext=seq,
            down_start_ext=self._next_down_ext,
            ts_offset=ts_offset & 0xFFFFFFFF,
        )
        self.current = layer
        self.switches += 1

    def _picture_id(self, run: _Run, d: Vp8Descriptor) -> int | None:
        if d.picture_id is None:
            return None
        if run.pid_ext is None:  # the run's first picture follows the last one sent
            if self._last_pid is not None:
                following = self._last_pid + 1
            else:
                following = d.picture_id if self._initial_pid is None else self._initial_pid
            run.pid_ext = d.picture_id
            run.pid_offset = following - d.picture_id
            return following % PICTURE_ID_MOD
        # A 7-bit id wraps at 128: unwrap against the newest, in the width this packet uses.
        ext = run.pid_ext + _signed(d.picture_id - run.pid_ext, 1 << d.picture_id_bits)
        run.pid_ext = max(run.pid_ext, ext)
        return (ext + run.pid_offset) % PICTURE_ID_MOD

    def _tl0picidx(self, run: _Run, d: Vp8Descriptor) -> int | None:
        if d.tl0picidx is None:
            return None
        if run.tl0_ext is None:
            following = 0 if self._last_tl0 is None else self._last_tl0 + 1
            run.tl0_ext = d.tl0picidx
            run.tl0_offset = following - d.tl0picidx
            return following % TL0PICIDX_MOD
        ext = run.tl0_ext + _signed(d.tl0picidx - run.tl0_ext, TL0PICIDX_MOD)
        run.tl0_ext = max(run.tl0_ext, ext)
        return (ext + run.tl0_offset) % TL0PICIDX_MOD
