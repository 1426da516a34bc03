"""Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

Every RTP packet of a connection carries one 16-bit transport-wide sequence number in a header
extension; the receiver answers with RTCP RTPFB (PT 205, FMT 15) packets saying, per sequence
number, whether it arrived and when (in 250 µs ticks). Both ends of the SFU need it:

- up (publisher → SFU): the forwarder bypasses aiortc's receive path, so nothing tells the
  browser's encoder how much its uplink carries; a ``TwccRecorder`` per up connection notes
  arrivals and builds the feedback the browser's own estimator reads;
- down (SFU → subscriber): a ``SendHistory`` per down connection remembers what was sent and
  turns the browser's feedback into ``PacketResult``s for ``media.estimator``.

Pure and clock-free: times are passed in, nothing here touches a socket or aiortc.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "TWCC_URI",
    "TwccRecorder",
    "TwccFeedback",
    "parse_feedback",
    "is_twcc",
    "split_compound",
    "SendHistory",
    "PacketResult",
]

TWCC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

_PT_RTPFB = 205
_FMT_TWCC = 15
_TICKS_PER_SECOND = 4000  # receive deltas count 250 µs
_TICKS_PER_REF = 256  # the reference time counts 64 ms
_REF_WRAP = 1 << 24
_MAX_STATUSES = 16384  # more in one feedback is not a real packet
_HEADER = struct.Struct("!BBH")
_FIXED = struct.Struct("!IIHHI")  # sender SSRC, media SSRC, base seq, count, ref time | fb count

# Packet status symbols.
_LOST, _SMALL, _LARGE = 0, 1, 2


def _unwrap(seq: int, near: int) -> int:
    """The 64-bit number whose low 16 bits are ``seq``, nearest to ``near``."""
    return near + (((seq - near + 0x8000) & 0xFFFF) - 0x8000)


def _check_seq(seq: int) -> None:
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"transport-wide sequence number {seq} is not a 16-bit value")


class TwccRecorder:
    """Notes the arrival of one connection's packets and builds the feedback for them.

    ``feedback`` covers every sequence number from the first not yet reported to the highest
    received. A packet that arrives after it was reported lost (reordering) moves the next
    feedback's start back to it, and packets already reported in between are reported again,
    as libwebrtc does, so the sender never sees a received packet turned lost.
    """

    WINDOW = 8192  # at most this many sequence numbers pending; a bigger jump ahead restarts
    HISTORY = 1024  # reported arrivals kept, so a late packet can be reported among them
    STRAYS = 64  # this many packets in a row from far behind are a restart, not stragglers
    MAX_RECEIVED_PER_PACKET = 200  # keeps one feedback packet well under a 1200-byte MTU

    def __init__(self) -> None:
        self._arrivals: dict[int, int] = {}  # unwrapped seq -> arrival in 250 µs ticks
        self._max: int | None = None
        self._start = 0  # first sequence number not yet reported
        self._floor = 0  # arrivals below this are forgotten
        self._fb_count = 0
        self._strays = 0  # packets in a row too old to place: many mean a restart behind

    def record(self, seq: int, arrival: float) -> None:
        """Note that ``seq`` arrived at ``arrival`` seconds (any origin, one clock)."""
        _check_seq(seq)
        ticks = round(arrival * _TICKS_PER_SECOND)
        top = self._max
        u = seq if top is None else _unwrap(seq, top)
        if top is None or not self._floor <= u <= top + self.WINDOW:
            if top is not None and u < self._floor and self._strays < self.STRAYS:
                self._strays += 1
                return  # too old to place among what is kept
            # The first packet, or a jump no reordering explains: the stream restarted.
            self._strays = 0
            self._arrivals = {seq: ticks}
            self._max = self._start = self._floor = seq
            return
        self._strays = 0
        if u in self._arrivals:
            return  # a duplicate
        self._arrivals[u] = ticks
        if u > top:
            self._max = top = u
            if top - self._start >= self.WINDOW:  # feedback is not being asked for
                self._start = top - self.WINDOW + 1
                self._forget_below(self._start - self.HISTORY)
        elif u < self._start:
            self._start = u

    def pending(self) -> int:
        """How many sequence numbers the next feedback covers."""
        return 0 if self._max is None else max(0, self._max - self._start + 1)

    def feedback(self, sender_ssrc: int, media_ssrc: int) -> list[bytes]:
        """Complete RTCP feedback packets for everything recorded since the previous call."""
        top = self._max
        if top is None or self._start > top:
            return []
        packets: list[bytes] = []
        seq = self._start
        while seq <= top:
            packet, seq = self._build(sender_ssrc, media_ssrc, seq, top)
            packets.append(packet)
        self._start = top + 1
        self._forget_below(self._start - self.HISTORY)
        return packets

    def _forget_below(self, floor: int) -> None:
        for old in range(self._floor, floor):
            self._arrivals.pop(old, None)
        self._floor = max(self._floor, floor)

    def _build(self, sender_ssrc: int, media_ssrc: int, base: int, top: int) -> tuple[bytes, int]:
        """One feedback packet from ``base``; returns it and the first sequence number it left
        out (a delta that does not fit in 16 bits, or a full packet, starts the next one)."""
        statuses: list[int] = []
        deltas = bytearray()
        ref: int | None = None
        previous = 0
        received = 0
        seq = base
        while seq <= top:
            ticks = self._arrivals.get(seq)
            if ticks is None:
                statuses.append(_LOST)
                seq += 1
                continue
            if ref is None:
                ref = ticks // _TICKS_PER_REF
                previous = ref * _TICKS_PER_REF
            delta = ticks - previous
            if received == self.MAX_RECEIVED_PER_PACKET or not -0x8000 <= delta <= 0x7FFF:
                break
            if 0 <= delta <= 0xFF:
                statuses.append(_SMALL)
                deltas.append(delta)
            else:
                statuses.append(_LARGE)
                deltas += delta.to_bytes(2, "big", signed=True)
            previous = ticks
            received += 1
            seq += 1
        body = _FIXED.pack(
            sender_ssrc & 0xFFFFFFFF,
            media_ssrc & 0xFFFFFFFF,
            base & 0xFFFF,
            len(statuses),
            (((ref or 0) % _REF_WRAP) << 8) | self._fb_count,
        )
        self._fb_count = (self._fb_count + 1) & 0xFF
        body += _encode_chunks(statuses) + bytes(deltas)
        pad = -len(body) % 4
        first = 0x80 | _FMT_TWCC
        if pad:  # as libwebrtc: the P bit and a count in the last byte
            first |= 0x20
            body += bytes(pad - 1) + bytes([pad])
        return _HEADER.pack(first, _PT_RTPFB, len(body) // 4) + body, seq


def _encode_chunks(statuses: list[int]) -> bytes:
    """Packet status chunks: run-length where a run is long, else status vectors (one bit per
    symbol when no delta is large, two bits otherwise). The last chunk may be only partly used;
    the status count says where the symbols end."""
    out = bytearray()
    n = len(statuses)
    i = 0
    while i < n:
        symbol = statuses[i]
        run = 1
        while i + run < n and run < 0x1FFF and statuses[i + run] == symbol:
            run += 1
        window = statuses[i : i + 14]
        has_large = _LARGE in window
        if run >= 14 or i + run == n or (run >= 7 and _LARGE in window[:7]):
            chunk = (symbol << 13) | run
            i += run
        elif not has_large:
            chunk = 0x8000
            for k, s in enumerate(window):
                chunk |= s << (13 - k)
            i += len(window)
        else:
            chunk = 0xC000
            for k, s in enumerate(window[:7]):
                chunk |= s << (12 - 2 * k)
            i += min(7, len(window))
        out += chunk.to_bytes(2, "big")
    return bytes(out)


@dataclass(frozen=True)
class TwccFeedback:
    """One parsed transport-cc feedback packet. ``packets`` holds, per sequence number from
    ``base_seq``, its arrival in seconds (origin unspecified, the sender's reference clock) or
    None when it was not received."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    fb_count: int
    reference_time: int  # 24-bit, in 64 ms units
    packets: list[tuple[int, float | None]]


def is_twcc(data: bytes) -> bool:
    """Whether ``data`` (one RTCP packet) is transport-cc feedback."""
    return (
        len(data) >= 4
        and data[0] >> 6 == 2
        and data[0] & 0x1F == _FMT_TWCC
        and (data[1] == _PT_RTPFB)
    )


def split_compound(data: bytes) -> list[bytes]:
    """The RTCP packets of a compound packet, each with its header (and padding)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise ValueError(f"RTCP compound packet: {len(data) - pos} stray bytes at {pos}")
        if data[pos] >> 6 != 2:
            raise ValueError(f"RTCP compound packet: version {data[pos] >> 6} at {pos}")
        end = pos + (_HEADER.unpack_from(data, pos)[2] + 1) * 4
        if end > len(data):
            raise ValueError(
                f"RTCP compound packet: packet at {pos} runs {end - len(data)} bytes past the end"
            )
        out.append(data[pos:end])
        pos = end
    return out


def parse_feedback(data: bytes) -> TwccFeedback:
    """Parse one transport-cc feedback packet; ``ValueError`` names what is wrong with it."""
    if len(data) < 20:
        raise ValueError(f"transport-cc feedback: {len(data)} bytes, at least 20 needed")
    first, pt, length = _HEADER.unpack_from(data)
    if first >> 6 != 2 or pt != _PT_RTPFB or first & 0x1F != _FMT_TWCC:
        raise ValueError(
            f"transport-cc feedback: version {first >> 6}, type {pt}, format {first & 0x1F}"
            f" (want 2, {_PT_RTPFB}, {_FMT_TWCC})"
        )
    end = (length + 1) * 4
    if end > len(data):
        raise ValueError(f"transport-cc feedback: length says {end} bytes, only {len(data)} given")
    if first & 0x20:
        pad = data[end - 1]
        if not 0 < pad <= end - 20:
            raise ValueError(f"transport-cc feedback: padding length {pad} is invalid")
        end -= pad
    sender, media, base, count, ref_fb = _FIXED.unpack_from(data, 4)
    if not 0 < count <= _MAX_STATUSES:
        raise ValueError(f"transport-cc feedback: packet status count {count} is absurd")
    pos = 20
    statuses: list[int] = []
    while len(statuses) < count:
        if pos + 2 > end:
            raise ValueError(
                f"transport-cc feedback: status chunks end after {len(statuses)} of {count}"
            )
        chunk = (data[pos] << 8) | data[pos + 1]
        pos += 2
        want = count - len(statuses)
        if not chunk & 0x8000:  # run length
            symbols = [(chunk >> 13) & 3] * min(chunk & 0x1FFF, want)
        elif not chunk & 0x4000:  # fourteen one-bit symbols
            symbols = [(chunk >> (13 - k)) & 1 for k in range(min(14, want))]
        else:  # seven two-bit symbols
            symbols = [(chunk >> (12 - 2 * k)) & 3 for k in range(min(7, want))]
        if 3 in symbols:
            raise ValueError(f"transport-cc feedback: reserved status symbol in chunk {chunk:#06x}")
        statuses += symbols
    ref = ref_fb >> 8
    ticks = ref * _TICKS_PER_REF
    packets: list[tuple[int, float | None]] = []
    for i, symbol in enumerate(statuses):
        seq = (base + i) & 0xFFFF
        if symbol == _LOST:
            packets.append((seq, None))
            continue
        size = 1 if symbol == _SMALL else 2
        if pos + size > end:
            raise ValueError(f"transport-cc feedback: receive delta {i} runs past the end")
        ticks += int.from_bytes(data[pos : pos + size], "big", signed=size == 2)
        pos += size
        packets.append((seq, ticks / _TICKS_PER_SECOND))
    return TwccFeedback(sender, media, base, ref_fb & 0xFF, ref, packets)


@dataclass(frozen=True)
class PacketResult:
    """What became of one sent packet: ``arrival_time`` is None when it was lost. Send times
    are the sender's clock; arrival times the receiver's (comparable only as differences)."""

    seq: int  # unwrapped, monotonic
    size: int  # bytes
    send_time: float
    arrival_time: float | None
    probe: bool = False


class _Sent:
    __slots__ = ("seq", "size", "at", "probe", "state")

    def __init__(self, seq: int, size: int, at: float, probe: bool) -> None:
        self.seq = seq
        self.size = size
        self.at = at
        self.probe = probe
        self.state = 0  # 0 not reported, 1 reported lost, 2 reported received


class SendHistory:
    """The packets recently sent on one connection, matched against the peer's feedback.

    Sequence numbers are unwrapped to a monotonic space. Feedback about packets never sent,
    or sent so long ago they left the ring, is ignored; a packet is reported at most once as
    received (a packet first reported lost and then received counts as received).
    """

    def __init__(self, size: int = 4096) -> None:
        if size < 16:
            raise ValueError(f"SendHistory size {size} is too small (at least 16)")
        self._size = size
        self._ring: list[_Sent | None] = [None] * size
        self._last: int | None = None
        self._ref: int | None = None  # last reference time, unwrapped across its 24-bit wrap

    def on_sent(self, seq: int, size: int, at: float, probe: bool = False) -> None:
        """Note that the packet with transport-wide ``seq`` (``size`` bytes) left at ``at``."""
        _check_seq(seq)
        if size < 0:
            raise ValueError(f"packet size {size} is negative")
        u = seq if self._last is None else _unwrap(seq, self._last)
        if self._last is None or u > self._last:
            self._last = u
        self._ring[u % self._size] = _Sent(u, size, at, probe)

    def on_feedback(self, fb: TwccFeedback) -> list[PacketResult]:
        """The packets ``fb`` newly reports on, oldest first; [] when it makes no sense."""
        last = self._last
        if last is None or not fb.packets:
            return []
        base = _unwrap(fb.base_seq, last)
        if base + len(fb.packets) - 1 > last:
            return []  # claims packets that were never sent
        shift = self._unwrap_reference(fb.reference_time)
        results: list[PacketResult] = []
        for i, (_, arrival) in enumerate(fb.packets):
            entry = self._ring[(base + i) % self._size]
            if entry is None or entry.seq != base + i:
                continue
            if arrival is None:
                if entry.state:
                    continue
                entry.state = 1
                results.append(PacketResult(entry.seq, entry.size, entry.at, None, entry.probe))
            elif entry.state != 2:
                entry.state = 2
                results.append(
                    PacketResult(entry.seq, entry.size, entry.at, arrival + shift, entry.probe)
                )
        return results

    def _unwrap_reference(self, ref: int) -> float:
        """Seconds to add to ``fb``'s arrival times so they stay continuous when the 24-bit
        reference time wraps (every 12.4 days)."""
        if self._ref is None:
            self._ref = ref
        else:
            delta = ((ref - self._ref + _REF_WRAP // 2) % _REF_WRAP) - _REF_WRAP // 2
            self._ref += delta
        return (self._ref - ref) * _TICKS_PER_REF / _TICKS_PER_SECOND
