"""The VP8 payload descriptor: read as RFC 7741 writes it, rewritten without touching the frame."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor
from av import VideoFrame

from media.forwarder import vp8_keyframe_start
from media.vp8 import parse_descriptor, rewrite


def descriptor(
    *,
    start: bool = True,
    pid: int = 0,
    picture_id: int | None = None,
    bits: int = 15,
    tl0picidx: int | None = None,
    tid: int | None = None,
    sync: bool = False,
    keyidx: int | None = None,
    non_reference: bool = False,
) -> bytes:
    """A descriptor written field by field from the RFC's figure."""
    ext = (
        (0x80 if picture_id is not None else 0)
        | (0x40 if tl0picidx is not None else 0)
        | (0x20 if tid is not None else 0)
        | (0x10 if keyidx is not None else 0)
    )
    first = (0x80 if ext else 0) | (0x20 if non_reference else 0) | (0x10 if start else 0) | pid
    out = bytearray([first])
    if ext:
        out.append(ext)
    if picture_id is not None:
        if bits == 15:
            out += bytes([0x80 | picture_id >> 8, picture_id & 0xFF])
        else:
            out.append(picture_id)
    if tl0picidx is not None:
        out.append(tl0picidx)
    if tid is not None or keyidx is not None:
        out.append(((tid or 0) << 6) | (0x20 if sync else 0) | (keyidx or 0))
    return bytes(out)


def keyframe_header(width: int, height: int) -> bytes:
    """A VP8 keyframe's first ten bytes: frame tag (P bit clear), start code, sizes."""
    return (
        b"\x50\x0f\x00\x9d\x01\x2a"
        + (width | 0x4000).to_bytes(2, "little")  # the scale bits must be masked off
        + (height | 0x8000).to_bytes(2, "little")
    )


def encoded_frames(width: int, height: int, count: int) -> list[list[bytes]]:
    """Payloads of ``count`` frames from aiortc's own VP8 encoder, the first a keyframe."""
    encoder = Vp8Encoder()
    frames = []
    for n in range(count):
        frame = VideoFrame.from_ndarray(
            np.full((height, width, 3), n * 10, dtype=np.uint8), format="bgr24"
        )
        frame.pts = n * 3000
        frame.time_base = Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        frames.append(payloads)
    return frames


def test_every_field_is_read() -> None:
    payload = descriptor(
        pid=0, picture_id=0x1234, tl0picidx=200, tid=2, sync=True, keyidx=17
    ) + keyframe_header(640, 360)
    d = parse_descriptor(payload)
    assert (d.start, d.partition_id, d.non_reference) == (True, 0, False)
    assert (d.picture_id, d.picture_id_bits) == (0x1234, 15)
    assert (d.tl0picidx, d.tid, d.layer_sync, d.keyidx) == (200, 2, True, 17)
    assert d.header_length == 6
    assert d.keyframe and d.begins_frame
    assert (d.width, d.height) == (640, 360)


def test_minimal_descriptor_and_a_7_bit_picture_id() -> None:
    d = parse_descriptor(descriptor(start=False, pid=3) + b"\x01\x02")
    assert (d.start, d.partition_id, d.picture_id, d.header_length) == (False, 3, None, 1)
    assert not d.keyframe and not d.begins_frame
    d = parse_descriptor(descriptor(picture_id=100, bits=7, non_reference=True) + b"\x01")
    assert (d.picture_id, d.picture_id_bits, d.header_length) == (100, 7, 3)
    assert d.non_reference and not d.keyframe  # P bit set: an interframe
    assert d.tl0picidx is None and d.tid is None and d.keyidx is None


def test_keyframe_without_its_whole_header_has_no_size() -> None:
    d = parse_descriptor(descriptor(picture_id=5) + keyframe_header(320, 180)[:6])
    assert d.keyframe
    assert d.width is None and d.height is None


@pytest.mark.parametrize(
    "payload, problem",
    [
        (b"", "empty"),
        (b"\x90", "no extension byte"),
        (b"\x90\x80", "picture id"),
        (b"\x90\x80\x81", "15-bit picture id"),
        (b"\x90\x40", "TL0PICIDX"),
        (b"\x90\xc0\x05", "TL0PICIDX"),
        (b"\x90\x20", "TID/KEYIDX"),
        (b"\x90\x10", "TID/KEYIDX"),
        (b"\x10", "no data after its descriptor"),
        (b"\x90\xe0\x81\x02\x03\x04", "no data after its descriptor"),
    ],
)
def test_truncated_payload_is_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_descriptor(payload)


def test_frames_from_a_real_encoder() -> None:
    frames = encoded_frames(320, 180, 4)
    first = [parse_descriptor(p) for p in frames[0]]
    assert first[0].keyframe and (first[0].width, first[0].height) == (320, 180)
    assert not any(d.keyframe for d in first[1:])
    later = [parse_descriptor(p) for frame in frames[1:] for p in frame]
    assert not any(d.keyframe for d in later)
    ids = [parse_descriptor(frame[0]).picture_id for frame in frames]
    assert all(i is not None for i in ids)
    assert [(b - a) % 32768 for a, b in zip(ids, ids[1:], strict=False)] == [1, 1, 1]


def test_agrees_with_aiortc_descriptor_parser() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        fields = {
            "start": rng.random() < 0.5,
            "pid": rng.randrange(8),
            "picture_id": rng.choice([None, rng.randrange(32768)]),
            "tl0picidx": rng.choice([None, rng.randrange(256)]),
            "tid": rng.choice([None, rng.randrange(4)]),
            "keyidx": rng.choice([None, rng.randrange(32)]),
        }
        body = rng.randbytes(rng.randrange(1, 20))
        payload = descriptor(**fields) + body
        theirs, data = VpxPayloadDescriptor.parse(payload)
        ours = parse_descriptor(payload)
        assert payload[ours.header_length :] == data
        assert (ours.picture_id, ours.tl0picidx, ours.keyidx) == (
            theirs.picture_id,
            theirs.tl0picidx,
            theirs.keyidx,
        )
        assert ours.tid == (theirs.tid[0] if theirs.tid is not None else None)
        assert (ours.start, ours.partition_id) == (bool(theirs.partition_start), fields["pid"])


def test_keyframe_agrees_with_the_forwarders_test() -> None:
    rng = random.Random(11)
    structured = []
    for _ in range(3000):
        bits = rng.choice([7, 15])
        payload = descriptor(
            start=rng.random() < 0.7,
            pid=rng.choice([0, 0, 0, 1, 5]),
            picture_id=rng.choice([None, rng.randrange(1 << bits)]),
            bits=bits,
            tl0picidx=rng.choice([None, rng.randrange(256)]),
            tid=rng.choice([None, rng.randrange(4)]),
            keyidx=rng.choice([None, rng.randrange(32)]),
        )
        structured.append(payload + rng.randbytes(rng.randrange(0, 12)))
    noise = [rng.randbytes(rng.randrange(0, 8)) for _ in range(3000)]
    keyframes = 0
    for payload in structured + noise:
        try:
            keyframe = parse_descriptor(payload).keyframe
        except ValueError:
            keyframe = False
        assert keyframe == vp8_keyframe_start(payload), payload.hex()
        keyframes += keyframe
    assert keyframes > 200  # both outcomes were exercised


def test_rewrite_widens_a_7_bit_picture_id_and_keeps_the_frame() -> None:
    body = keyframe_header(160, 90) + b"frame data"
    payload = descriptor(picture_id=0x7F, bits=7, tl0picidx=9, tid=0, sync=True) + body
    out = rewrite(payload, 0x4321, 10)
    assert len(out) == len(payload) + 1
    d = parse_descriptor(out)
    assert (d.picture_id, d.picture_id_bits, d.tl0picidx) == (0x4321, 15, 10)
    assert (d.tid, d.layer_sync, d.keyframe, d.width, d.height) == (0, True, True, 160, 90)
    assert out[d.header_length :] == body


def test_rewrite_keeps_what_it_is_not_asked_to_change() -> None:
    body = b"\x01interframe"
    payload = descriptor(picture_id=33, bits=7, tl0picidx=250, keyidx=3) + body
    assert rewrite(payload, None, None) == payload
    out = rewrite(payload, None, 251)
    assert len(out) == len(payload)  # the 7-bit id kept its width
    d = parse_descriptor(out)
    assert (d.picture_id, d.picture_id_bits, d.tl0picidx, d.keyidx) == (33, 7, 251, 3)
    out = rewrite(payload, 32767, None)
    d = parse_descriptor(out)
    assert (d.picture_id, d.tl0picidx, d.keyidx) == (32767, 250, 3)
    assert out[d.header_length :] == body


def test_rewrite_to_the_same_values_returns_the_payload_itself() -> None:
    payload = descriptor(picture_id=0x1234, bits=15, tl0picidx=7) + b"\x01interframe"
    assert rewrite(payload, 0x1234, 7) is payload  # nothing built: the usual case
    assert rewrite(payload, 0x1234, 8) != payload
    short = descriptor(picture_id=33, bits=7, tl0picidx=7) + b"\x01interframe"
    widened = rewrite(short, 33, 7)  # the same id, but a 7-bit one is still widened
    assert len(widened) == len(short) + 1 and parse_descriptor(widened).picture_id == 33


def test_rewritten_real_frames_still_decode() -> None:
    from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
    from aiortc.jitterbuffer import JitterFrame

    decoder = Vp8Decoder()
    for n, frame in enumerate(encoded_frames(320, 180, 3)):
        payloads = [rewrite(p, (32760 + n) % 32768, None) for p in frame]
        assert {parse_descriptor(p).picture_id for p in payloads} == {(32760 + n) % 32768}
        data = b"".join(vp8_depayload(p) for p in payloads)
        decoded = decoder.decode(JitterFrame(data=data, timestamp=n * 3000))
        assert len(decoded) == 1 and (decoded[0].width, decoded[0].height) == (320, 180)


@pytest.mark.parametrize(
    "payload, picture_id, tl0picidx, problem",
    [
        (descriptor(tl0picidx=1) + b"\x01", 5, None, "no picture id"),
        (descriptor(picture_id=1) + b"\x01", None, 5, "no TL0PICIDX"),
        (descriptor(picture_id=1) + b"\x01", 32768, None, "picture id 32768 out of range"),
        (descriptor(picture_id=1) + b"\x01", -1, None, "out of range"),
        (descriptor(picture_id=1, tl0picidx=1) + b"\x01", None, 256, "TL0PICIDX 256"),
        (b"\x90\x80", 1, None, "truncated"),
    ],
)
def test_rewrite_refuses_what_it_cannot_do(
    payload: bytes, picture_id: int | None, tl0picidx: int | None, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        rewrite(payload, picture_id, tl0picidx)
