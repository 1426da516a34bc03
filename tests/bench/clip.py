"""Clip: a few seconds of VP8 video and Opus audio, encoded once and kept as RTP payloads.

The load generator replays these payloads instead of encoding, so a publisher costs little more
than the packets it sends. Video payloads are stored without their VP8 payload descriptor: the
sender writes a fresh descriptor per frame, whose PictureID names the publisher and the frame
(see ``picture_id``), which lets a subscriber match a received frame to its send time.
"""

from __future__ import annotations

import math
import pickle
import random
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from av import AudioFrame, VideoFrame

__all__ = ["Clip", "VideoFrameData", "picture_id", "publisher_of", "encode_clip"]

FPS = 30
VIDEO_CLOCK = 90000
AUDIO_PACKETS_PER_SECOND = 50
_PUBLISHER_BITS = 5  # PictureID is 15 bits: 5 for the publisher, 10 for the frame (34 s at 30 fps)
_FRAME_MASK = (1 << (15 - _PUBLISHER_BITS)) - 1
MAX_PUBLISHERS = 1 << _PUBLISHER_BITS


def picture_id(publisher: int, frame: int) -> int:
    return (publisher << (15 - _PUBLISHER_BITS)) | (frame & _FRAME_MASK)


def publisher_of(pid: int) -> int:
    return pid >> (15 - _PUBLISHER_BITS)


@dataclass(frozen=True)
class VideoFrameData:
    """One encoded frame as RTP payload chunks without their 4-byte VP8 descriptor."""

    chunks: tuple[bytes, ...]
    keyframe: bool

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks)


@dataclass(frozen=True)
class Clip:
    """Pre-encoded media: ``video[0]`` is a keyframe, the rest follow it; ``audio`` is 20 ms
    Opus packets. ``lower``: for a simulcast publisher, the same pictures encoded smaller (low
    to high, as a browser's ``q`` and ``h`` layers), each as long as ``video``."""

    width: int
    height: int
    video: tuple[VideoFrameData, ...]
    audio: tuple[bytes, ...]
    lower: tuple[Clip, ...] = ()

    @property
    def video_kbps(self) -> float:
        delta = self.video[1:]
        return sum(f.size for f in delta) * 8 * FPS / len(delta) / 1000

    @property
    def video_packets_per_second(self) -> float:
        delta = self.video[1:]
        return sum(len(f.chunks) for f in delta) * FPS / len(delta)

    def save(self, path: Path) -> None:
        path.write_bytes(pickle.dumps(self))

    @classmethod
    def load(cls, path: Path) -> Clip:
        clip = pickle.loads(path.read_bytes())  # our own file, written by ``save``
        assert isinstance(clip, cls)
        return clip


def _texture(width: int, height: int, seed: int) -> bytes:
    rng = random.Random(seed)
    # Blocky noise: costly enough that a 500 kbit/s CBR encoder spends its whole budget.
    row_blocks = [bytes(rng.randrange(40, 216) for _ in range(width // 8)) for _ in range(64)]
    rows = [bytes(b for b in row_blocks[(y // 8) % 64] for _ in range(8)) for y in range(height)]
    return b"".join(rows)


def _video_frames(width: int, height: int, count: int) -> list[VideoFrame]:
    luma = _texture(width, height, 1)
    chroma = bytes([128]) * (width * height // 4)
    frames = []
    for n in range(count):
        frame = VideoFrame(width=width, height=height, format="yuv420p")
        shift = (n * 4 * width + n * 3) % len(luma)  # a steady pan: motion the encoder can find
        moved = luma[shift:] + luma[:shift]
        y_plane, u_plane, v_plane = frame.planes
        if y_plane.line_size == width:
            y_plane.update(moved)
        else:  # padded lines
            stride = y_plane.line_size
            y_plane.update(
                b"".join(
                    moved[r * width : (r + 1) * width].ljust(stride, b"\0") for r in range(height)
                )
            )
        for plane in (u_plane, v_plane):
            plane.update(chroma.ljust(plane.buffer_size, b"\x80")[: plane.buffer_size])
        frame.pts = n * (VIDEO_CLOCK // FPS)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        frames.append(frame)
    return frames


def _audio_packets(count: int) -> list[bytes]:
    encoder = OpusEncoder()
    encoder.codec.bit_rate = 32000  # a browser's usual voice bitrate, not aiortc's 96 kbit/s
    rate, samples = 48000, 960
    packets: list[bytes] = []
    n = 0
    while len(packets) < count:
        frame = AudioFrame(format="s16", layout="stereo", samples=samples)
        tone = b"".join(
            struct.pack("<hh", s, s)
            for s in (
                int(3000 * math.sin(2 * math.pi * 220 * (n * samples + i) / rate))
                for i in range(samples)
            )
        )
        frame.planes[0].update(tone)
        frame.sample_rate = rate
        frame.pts = n * samples
        frame.time_base = Fraction(1, rate)
        payloads, _ = encoder.encode(frame)
        packets.extend(payloads)
        n += 1
    return packets[:count]


# Simulcast layers below the full one, as the room's client publishes them: 1/4 and 1/2 of the
# full size, at about these bitrates.
LOWER_LAYERS = ((4, 100_000), (2, 250_000))


def encode_clip(
    seconds: float = 10.0,
    width: int = 640,
    height: int = 360,
    *,
    bitrate: int = 500_000,
    simulcast: bool = False,
) -> Clip:
    """Encode ``seconds`` of synthetic video (with aiortc's own VP8 encoder, ``bitrate`` CBR)
    and one second of an Opus tone; with ``simulcast``, the ``LOWER_LAYERS`` too."""
    encoder = Vp8Encoder()
    # aiortc clamps its setter at 250 kbit/s; a 160×90 layer wants less.
    encoder._Vp8Encoder__target_bitrate = bitrate  # type: ignore[attr-defined]
    video: list[VideoFrameData] = []
    for n, frame in enumerate(_video_frames(width, height, int(seconds * FPS))):
        payloads, _ = encoder.encode(frame, force_keyframe=n == 0)
        # aiortc writes a 4-byte descriptor: X|S, I, then a 15-bit PictureID with the M bit.
        assert all(len(p) > 4 and p[1] == 0x80 and p[2] & 0x80 for p in payloads)
        chunks = tuple(p[4:] for p in payloads)
        video.append(VideoFrameData(chunks, keyframe=not chunks[0][0] & 0x01))
    assert video[0].keyframe
    lower = tuple(
        encode_clip(seconds, width // scale, height // scale, bitrate=rate)
        for scale, rate in (LOWER_LAYERS if simulcast else ())
    )
    audio = tuple(_audio_packets(AUDIO_PACKETS_PER_SECOND))
    return Clip(width, height, tuple(video), audio, lower)


if __name__ == "__main__":
    import time

    started = time.perf_counter()
    clip = encode_clip(simulcast=True)
    for layer in clip.lower:
        print(f"layer {layer.width}x{layer.height}: {layer.video_kbps:.0f} kbit/s")
    print(
        f"{len(clip.video)} frames, keyframe {clip.video[0].size} B, "
        f"{clip.video_kbps:.0f} kbit/s, {clip.video_packets_per_second:.1f} packets/s, "
        f"keyframes {sum(f.keyframe for f in clip.video)}, audio {len(clip.audio)} packets of "
        f"~{sum(map(len, clip.audio)) / len(clip.audio):.0f} B, "
        f"{time.perf_counter() - started:.1f} s"
    )
