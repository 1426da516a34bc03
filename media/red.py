"""Redundant audio (RFC 2198) for Opus, as Chrome sends and receives it under ``red/48000/2``.

Each RED payload carries the current Opus packet (the primary) after copies of up to
``distance`` earlier ones, so a subscriber that loses a packet recovers it from the next one
without waiting a round trip for a retransmission. On a lossy long link that is the difference
between concealed and heard speech; it costs about ``distance`` times the audio rate, small
next to video.

Wire format: one 4-byte header per redundant block (F=1, the block's payload type, its
timestamp offset back from the primary in 14 bits, its length in 10 bits), a 1-byte header for
the primary (F=0, payload type), then the blocks' data in the same order, oldest first.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

__all__ = ["RedEncoder", "RedBlock", "decode", "MAX_BLOCKS"]

MAX_OFFSET = 1 << 14  # a redundant block's timestamp offset must be below this
MAX_LENGTH = 1 << 10  # and its length too
MAX_BLOCKS = 8  # decode refuses more blocks than this (primary included)
DTX_MAX_BYTES = 2  # an Opus packet this short is DTX or empty: silence, not worth repeating


class RedBlock(NamedTuple):
    """One block of a decoded RED payload: how far its timestamp is behind the packet's
    (0 for the primary), its payload type and its data."""

    ts_offset: int
    pt: int
    payload: bytes


class _Sent(NamedTuple):
    timestamp: int
    pt: int
    payload: bytes


class RedEncoder:
    """Wraps one down-track's Opus packets in RED, repeating the last ``distance`` of them.

    Redundancy is left out, oldest first, when it cannot be carried: a block whose timestamp
    offset does not fit in 14 bits (older than about 341 ms at 48 kHz, e.g. across a DTX
    pause), a block of 1024 bytes or more, or blocks that would take the payload over
    ``max_size`` bytes. DTX and empty packets are sent as primaries but never repeated.

    The history is forgotten (the packet goes out alone) when the timestamp does not move
    forward, or jumps forward by more than ``max_gap`` samples (1 s at 48 kHz): the stream was
    reordered, restarted or paused, and old audio would only be played at the wrong time.
    """

    def __init__(self, distance: int = 2, *, max_size: int = 1200, max_gap: int = 48000) -> None:
        if not 0 <= distance < MAX_BLOCKS:
            raise ValueError(f"RED distance must be 0..{MAX_BLOCKS - 1}, not {distance!r}")
        self.distance = distance
        self.max_size = max_size
        self.max_gap = max_gap
        self._history: deque[_Sent] = deque(maxlen=distance or 1)
        self._last_ts: int | None = None

    def reset(self) -> None:
        """Forget the packets sent so far: the next one goes out without redundancy."""
        self._history.clear()
        self._last_ts = None

    def encode(self, payload: bytes, timestamp: int, opus_pt: int) -> bytes:
        """The RED payload for the Opus ``payload`` at RTP ``timestamp`` (payload type
        ``opus_pt``), carrying what fits of the previous packets."""
        if not 0 <= opus_pt < 128:
            raise ValueError(f"Opus payload type must be 0..127, not {opus_pt!r}")
        if self._last_ts is not None:
            step = (timestamp - self._last_ts) & 0xFFFFFFFF
            if step == 0 or step >= 0x80000000 or step > self.max_gap:
                self.reset()
        self._last_ts = timestamp

        blocks: list[tuple[int, _Sent]] = []
        size = 1 + len(payload)
        for old in reversed(self._history):  # newest first: they are the likeliest to help
            offset = (timestamp - old.timestamp) & 0xFFFFFFFF
            if offset >= MAX_OFFSET:
                break  # the older ones are further still
            if len(old.payload) >= MAX_LENGTH or size + 4 + len(old.payload) > self.max_size:
                continue
            blocks.append((offset, old))
            size += 4 + len(old.payload)
        blocks.reverse()

        headers = b"".join(
            ((0x80 | old.pt) << 24 | offset << 10 | len(old.payload)).to_bytes(4, "big")
            for offset, old in blocks
        )
        out = headers + bytes([opus_pt]) + b"".join(old.payload for _, old in blocks) + payload
        if self.distance and len(payload) > DTX_MAX_BYTES:
            self._history.append(_Sent(timestamp, opus_pt, payload))
        return out


def decode(red_payload: bytes) -> list[RedBlock]:
    """The blocks of a RED payload, oldest first, the primary last (offset 0); raise
    ``ValueError`` naming the problem for a payload that is empty, has more than
    ``MAX_BLOCKS`` blocks, or whose block lengths run past its end."""
    headers: list[tuple[int, int, int | None]] = []  # pt, offset, length (None: primary)
    at = 0
    while True:
        if at >= len(red_payload):
            raise ValueError(f"RED payload ends inside its block headers (at byte {at})")
        if len(headers) == MAX_BLOCKS:
            raise ValueError(f"RED payload has more than {MAX_BLOCKS} blocks")
        first = red_payload[at]
        if not first & 0x80:
            headers.append((first & 0x7F, 0, None))
            at += 1
            break
        if at + 4 > len(red_payload):
            raise ValueError(f"RED payload ends inside a block header (at byte {at})")
        word = int.from_bytes(red_payload[at + 1 : at + 4], "big")
        headers.append((first & 0x7F, word >> 10, word & 0x3FF))
        at += 4
    blocks: list[RedBlock] = []
    for pt, offset, length in headers:
        end = len(red_payload) if length is None else at + length
        if end > len(red_payload):
            raise ValueError(
                f"RED block of {length} bytes at byte {at} runs past the payload's end"
                f" ({len(red_payload)} bytes)"
            )
        blocks.append(RedBlock(offset, pt, red_payload[at:end]))
        at = end
    return blocks
