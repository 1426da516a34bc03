"""The forwarder's own rules, without a network: keyframes, rate limits, the NACK ring."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiortc.rtp import RtpPacket

from media.forwarder import RING_SIZE, Forwarder, vp8_keyframe_start


@dataclass
class FakeUpstream:
    plis: int = 0
    nacks: list[list[int]] = field(default_factory=list)

    def send_pli(self) -> None:
        self.plis += 1

    def send_nack(self, lost: list[int]) -> None:
        self.nacks.append(lost)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class FakeDown:
    """Stands in for a DownTrack: records what it was sent."""

    waiting: bool = True
    ready: bool = False
    paused: bool = False
    seq_offset: int = 0
    sent: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)

    def attach(self, forwarder: Forwarder) -> None:
        forwarder.activate(self)  # type: ignore[arg-type]

    def start(self, packet: RtpPacket) -> None:
        self.waiting = False
        self.seq_offset = 1000 - packet.sequence_number

    async def send(self, packet: RtpPacket, ntp: int, abs_send_time: bytes) -> None:
        self.sent.append(packet.sequence_number)

    async def resend(self, packet: RtpPacket, abs_send_time: bytes) -> None:
        self.resent.append(packet.sequence_number)


KEYFRAME = bytes([0x90, 0x80, 0x12, 0x00, 0x9D, 0x01, 0x2A])  # S=1, PictureID, P=0
DELTA = bytes([0x90, 0x80, 0x13, 0x01])  # S=1, PictureID, P=1
MIDDLE = bytes([0x80, 0x80, 0x13, 0x00])  # S=0: not a partition start


def vp8(seq: int, payload: bytes) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, payload=payload)


def test_vp8_keyframe_detection_reads_the_payload_descriptor() -> None:
    assert vp8_keyframe_start(KEYFRAME)
    assert vp8_keyframe_start(bytes([0x10, 0x00]))  # minimal descriptor, P=0
    assert not vp8_keyframe_start(DELTA)
    assert not vp8_keyframe_start(MIDDLE)
    assert not vp8_keyframe_start(bytes([0x11, 0x00]))  # partition 1
    assert not vp8_keyframe_start(b"")
    assert not vp8_keyframe_start(bytes([0x90]))  # truncated


def test_many_keyframe_requests_cost_one_pli_per_interval() -> None:
    up, clock = FakeUpstream(), Clock()
    forwarder = Forwarder("video", up, keyframe_interval=0.5, clock=clock)

    for _ in range(10):
        forwarder.request_keyframe()
    clock.now += 0.49
    forwarder.request_keyframe()
    assert up.plis == 1

    clock.now += 0.01
    forwarder.request_keyframe()
    forwarder.request_keyframe()
    assert up.plis == 2
    assert forwarder.keyframe_requests == 2


def test_audio_forwarder_never_asks_for_keyframes() -> None:
    up = FakeUpstream()
    Forwarder("audio", up).request_keyframe()
    assert up.plis == 0


async def test_keyframe_requests_repeat_until_a_keyframe_arrives() -> None:
    up, clock = FakeUpstream(), Clock()
    forwarder = Forwarder("video", up, keyframe_interval=0.5, clock=clock)
    forwarder.request_keyframe()
    for seq in range(1, 41):  # 1.33 s of delta frames
        clock.now += 1 / 30
        await forwarder.forward(vp8(seq, DELTA))
    assert up.plis == 3  # at 0 s, then at the first packets ≥ 0.5 s apart

    await forwarder.forward(vp8(41, KEYFRAME))
    clock.now += 2
    await forwarder.forward(vp8(42, DELTA))
    assert up.plis == 3


async def test_new_subscriber_gets_nothing_before_its_first_keyframe() -> None:
    up = FakeUpstream()
    forwarder = Forwarder("video", up)
    down = FakeDown()
    forwarder.add(down)  # type: ignore[arg-type]
    assert up.plis == 1  # a new subscriber asks for a keyframe

    await forwarder.forward(vp8(1, DELTA))
    await forwarder.forward(vp8(2, MIDDLE))
    await forwarder.forward(vp8(3, KEYFRAME))
    await forwarder.forward(vp8(4, MIDDLE))
    await forwarder.forward(vp8(5, DELTA))

    assert down.sent == [3, 4, 5]
    assert forwarder.packets_forwarded == 3


async def test_nacks_are_answered_from_the_ring_and_the_rest_asked_upstream() -> None:
    up = FakeUpstream()
    forwarder = Forwarder("video", up)
    down = FakeDown()
    forwarder.add(down)  # type: ignore[arg-type]
    await forwarder.forward(vp8(10, KEYFRAME))
    for seq in range(11, 11 + RING_SIZE):
        await forwarder.forward(vp8(seq, MIDDLE))
    newest = 10 + RING_SIZE

    # down numbers are up numbers + offset; 10 has been overwritten by the ring's wrap
    await forwarder.retransmit(down, [s + down.seq_offset for s in (10, 600, newest)])  # type: ignore[arg-type]

    assert down.resent == [600, newest]
    assert up.nacks == [[10]]
    assert forwarder.retransmissions == 2


async def test_paused_subscriber_gets_nothing_and_resumes_at_the_next_keyframe() -> None:
    up = FakeUpstream()
    forwarder = Forwarder("video", up, keyframe_interval=0.0)
    shown, hidden = FakeDown(), FakeDown()
    for down in (shown, hidden):
        forwarder.add(down)  # type: ignore[arg-type]
    await forwarder.forward(vp8(1, KEYFRAME))
    forwarder.pause(hidden)  # type: ignore[arg-type]
    await forwarder.forward(vp8(2, DELTA))
    await forwarder.forward(vp8(3, KEYFRAME))
    assert shown.sent == [1, 2, 3] and hidden.sent == [1]
    plis = up.plis
    forwarder.resume(hidden)  # type: ignore[arg-type]
    assert hidden.waiting and up.plis == plis + 1  # it cannot decode before a keyframe
    await forwarder.forward(vp8(4, DELTA))
    await forwarder.forward(vp8(5, KEYFRAME))
    await forwarder.forward(vp8(6, DELTA))
    assert hidden.sent == [1, 5, 6] and shown.sent == [1, 2, 3, 4, 5, 6]
