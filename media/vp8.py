"""The VP8 RTP payload descriptor (RFC 7741 section 4.2), read and rewritten without decoding.

A simulcast layer switch splices packets of different encodings into one down-track; the
decoder then needs picture ids and TL0PICIDX that run on without a jump, so the forwarder
rewrites them in each payload. This module parses the descriptor (and, for a keyframe, the frame
size from the VP8 keyframe header, RFC 6386 section 9.1) and writes it back with new values.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Vp8Descriptor", "parse_descriptor", "rewrite", "PICTURE_ID_MOD", "TL0PICIDX_MOD"]

PICTURE_ID_MOD = 1 << 15
TL0PICIDX_MOD = 1 << 8
_KEYFRAME_START_CODE = b"\x9d\x01\x2a"


@dataclass(slots=True)  # not frozen: that costs half of a parse, on every forwarded packet
class Vp8Descriptor:
    """One packet's VP8 payload descriptor; ``None`` for a field the packet does not carry."""

    start: bool  # S: the packet starts a VP8 partition
    partition_id: int  # PID: 0 … 7
    non_reference: bool  # N: no other frame refers to this one
    picture_id: int | None
    picture_id_bits: int  # 7 or 15 (0 without a picture id)
    tl0picidx: int | None
    tid: int | None
    layer_sync: bool  # Y: the frame depends only on base-layer (TID 0) frames
    keyidx: int | None
    header_length: int  # bytes before the VP8 payload itself
    keyframe: bool  # the packet starts a keyframe (partition 0 start, P bit clear)
    width: int | None = None  # a keyframe's size, when its header is in this packet
    height: int | None = None

    @property
    def begins_frame(self) -> bool:
        """The packet carries the start of a frame (the start of partition 0)."""
        return self.start and self.partition_id == 0


def parse_descriptor(payload: bytes) -> Vp8Descriptor:
    """Read the descriptor at the head of a VP8 RTP payload; raise ``ValueError`` if the payload
    ends inside the descriptor or carries nothing after it."""
    n = len(payload)
    if n == 0:
        raise ValueError("VP8 payload is empty")
    b0 = payload[0]
    picture_id = tl0picidx = tid = keyidx = None
    bits = 0
    layer_sync = False
    i = 1
    if b0 & 0x80:  # X: the extension byte follows
        if n < 2:
            raise ValueError("VP8 descriptor truncated: no extension byte")
        x = payload[1]
        i = 2
        if x & 0x80:  # I: picture id, 7 bits or (M set) 15 bits
            if n <= i:
                raise ValueError("VP8 descriptor truncated in the picture id")
            if payload[i] & 0x80:
                if n <= i + 1:
                    raise ValueError("VP8 descriptor truncated in the 15-bit picture id")
                picture_id = ((payload[i] & 0x7F) << 8) | payload[i + 1]
                bits = 15
                i += 2
            else:
                picture_id = payload[i]
                bits = 7
                i += 1
        if x & 0x40:  # L: TL0PICIDX
            if n <= i:
                raise ValueError("VP8 descriptor truncated in TL0PICIDX")
            tl0picidx = payload[i]
            i += 1
        if x & 0x30:  # T and/or K: one byte TID(2) Y(1) KEYIDX(5)
            if n <= i:
                raise ValueError("VP8 descriptor truncated in TID/KEYIDX")
            tk = payload[i]
            if x & 0x20:
                tid = tk >> 6
                layer_sync = bool(tk & 0x20)
            if x & 0x10:
                keyidx = tk & 0x1F
            i += 1
    if n <= i:
        raise ValueError("VP8 payload has no data after its descriptor")
    start = bool(b0 & 0x10)
    partition_id = b0 & 0x07
    keyframe = start and partition_id == 0 and not payload[i] & 0x01
    width = height = None
    # A keyframe's frame tag (3 bytes) is followed by a start code and the 14-bit dimensions.
    if keyframe and n >= i + 10 and payload[i + 3 : i + 6] == _KEYFRAME_START_CODE:
        width = int.from_bytes(payload[i + 6 : i + 8], "little") & 0x3FFF
        height = int.from_bytes(payload[i + 8 : i + 10], "little") & 0x3FFF
    return Vp8Descriptor(
        start=start,
        partition_id=partition_id,
        non_reference=bool(b0 & 0x20),
        picture_id=picture_id,
        picture_id_bits=bits,
        tl0picidx=tl0picidx,
        tid=tid,
        layer_sync=layer_sync,
        keyidx=keyidx,
        header_length=i,
        keyframe=keyframe,
        width=width,
        height=height,
    )


def rewrite(
    payload: bytes,
    picture_id: int | None,
    tl0picidx: int | None,
    *,
    descriptor: Vp8Descriptor | None = None,
) -> bytes:
    """``payload`` with its picture id and/or TL0PICIDX replaced (``None`` keeps the packet's).

    A picture id is always written in 15 bits: a 7-bit one is widened and the payload grows by
    one byte. The down-track's picture ids then keep one width whatever layer they came from,
    and a run of ids past 127 never reads as a wrap (RFC 7741 lets the width change; decoders
    handle it). Replacing a field the packet does not carry, or an out-of-range value, raises
    ``ValueError``. ``descriptor`` saves parsing again when the caller already has it.
    """
    d = descriptor if descriptor is not None else parse_descriptor(payload)
    if picture_id is not None:
        if d.picture_id is None:
            raise ValueError("VP8 packet has no picture id to replace")
        if not 0 <= picture_id < PICTURE_ID_MOD:
            raise ValueError(f"VP8 picture id {picture_id} out of range 0…32767")
    if tl0picidx is not None:
        if d.tl0picidx is None:
            raise ValueError("VP8 packet has no TL0PICIDX to replace")
        if not 0 <= tl0picidx < TL0PICIDX_MOD:
            raise ValueError(f"VP8 TL0PICIDX {tl0picidx} out of range 0…255")
    if (picture_id is None or (picture_id == d.picture_id and d.picture_id_bits == 15)) and (
        tl0picidx is None or tl0picidx == d.tl0picidx
    ):
        return payload  # nothing changes (a down-track that never switched: the usual case)
    head = bytearray(payload[:2])  # first byte and extension byte: unchanged
    i = 2
    if d.picture_id is not None:
        pid = d.picture_id if picture_id is None else picture_id
        if picture_id is None and d.picture_id_bits == 7:
            head.append(pid)
        else:
            head += bytes((0x80 | pid >> 8, pid & 0xFF))
        i += 1 if d.picture_id_bits == 7 else 2
    if d.tl0picidx is not None:
        head.append(d.tl0picidx if tl0picidx is None else tl0picidx)
        i += 1
    return bytes(head) + payload[i:]
