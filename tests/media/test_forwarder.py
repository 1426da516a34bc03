"""The forwarder's own rules, without a network: keyframes per layer and their rate limits,
layer switches at keyframes, pauses, and each subscriber's retransmissions within its budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from media.forwarder import HISTORY, DownTrack, Forwarder, vp8_keyframe_start
from media.munger import Munger
from media.vp8 import Vp8Descriptor


@dataclass
class FakeUpstream:
    plis: list[int] = field(default_factory=list)  # the layer of each PLI
    nacks: list[list[int]] = field(default_factory=list)

    def send_pli(self, layer: int = 0) -> None:
        self.plis.append(layer)

    def send_nack(self, lost: list[int], layer: int = 0) -> None:
        self.nacks.append(lost)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class FakeDown:
    """Stands in for a video DownTrack, with a real Munger: records what it was sent."""

    kind: str = "video"
    waiting: bool = True
    ready: bool = False
    paused: bool = False
    layer: int = 0
    munger: Munger | None = field(default_factory=Munger)
    sent: list[tuple[int, int]] = field(default_factory=list)  # (layer, up seq)
    resent: list[int] = field(default_factory=list)
    stale: bool = False

    def attach(self, forwarder: Forwarder) -> None:
        forwarder.activate(self)  # type: ignore[arg-type]

    def forward(
        self,
        packet: RtpPacket,
        layer: int,
        keyframe: bool,
        now: float,
        ntp: int,
        ast: bytes,
        descriptor: Vp8Descriptor | None = None,
    ) -> bool:
        assert self.munger is not None
        out = self.munger.rewrite(
            layer,
            packet.sequence_number,
            packet.timestamp,
            packet.payload,
            keyframe,
            packet.marker,
            now,
            descriptor,
        )
        if out is None:
            return False
        self.waiting = False
        self.sent.append((layer, packet.sequence_number))
        return True

    def resend(self, lost: list[int], now: float) -> tuple[int, bool]:
        self.resent.extend(lost)
        return len(lost), self.stale


KEYFRAME = bytes([0x90, 0x80, 0x12, 0x00, 0x9D, 0x01, 0x2A])  # S=1, PictureID, P=0
DELTA = bytes([0x90, 0x80, 0x13, 0x01])  # S=1, PictureID, P=1
MIDDLE = bytes([0x80, 0x80, 0x13, 0x00])  # S=0: not a partition start


def vp8(seq: int, payload: bytes) -> RtpPacket:
    return RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000, payload=payload)


def down_seqs(down: FakeDown, layer: int) -> list[int]:
    return [seq for lay, seq in down.sent if lay == layer]


def test_vp8_keyframe_detection_reads_the_payload_descriptor() -> None:
    assert vp8_keyframe_start(KEYFRAME)
    assert vp8_keyframe_start(bytes([0x10, 0x00]))  # minimal descriptor, P=0
    assert not vp8_keyframe_start(DELTA)
    assert not vp8_keyframe_start(MIDDLE)
    assert not vp8_keyframe_start(bytes([0x11, 0x00]))  # partition 1
    assert not vp8_keyframe_start(b"")
    assert not vp8_keyframe_start(bytes([0x90]))  # truncated


def test_many_keyframe_requests_cost_one_pli_per_interval_and_layer() -> None:
    up, clock = FakeUpstream(), Clock()
    forwarder = Forwarder("video", up, layers=3, keyframe_interval=0.5, clock=clock)

    for _ in range(10):
        forwarder.request_keyframe(0)
        forwarder.request_keyframe(2)
    clock.now += 0.49
    forwarder.request_keyframe(0)
    assert up.plis == [0, 2]  # one per layer: a layer's subscribers do not cost the others

    clock.now += 0.01
    forwarder.request_keyframe(0)
    forwarder.request_keyframe(0)
    assert up.plis == [0, 2, 0]
    assert forwarder.keyframe_requests == 3


def test_audio_forwarder_never_asks_for_keyframes() -> None:
    up = FakeUpstream()
    Forwarder("audio", up).request_keyframe()
    assert up.plis == []


async def test_keyframe_requests_repeat_until_a_keyframe_arrives() -> None:
    up, clock = FakeUpstream(), Clock()
    forwarder = Forwarder("video", up, keyframe_interval=0.5, clock=clock)
    forwarder.request_keyframe()
    for seq in range(1, 41):  # 1.33 s of delta frames
        clock.now += 1 / 30
        await forwarder.forward(vp8(seq, DELTA))
    assert len(up.plis) == 3  # at 0 s, then at the first packets ≥ 0.5 s apart

    await forwarder.forward(vp8(41, KEYFRAME))
    clock.now += 2
    await forwarder.forward(vp8(42, DELTA))
    assert len(up.plis) == 3


async def test_new_subscriber_gets_nothing_before_its_first_keyframe() -> None:
    up = FakeUpstream()
    forwarder = Forwarder("video", up)
    down = FakeDown()
    forwarder.add(down)  # type: ignore[arg-type]
    assert up.plis == [0]  # a new subscriber asks for a keyframe

    await forwarder.forward(vp8(1, DELTA))
    await forwarder.forward(vp8(2, MIDDLE))
    await forwarder.forward(vp8(3, KEYFRAME))
    await forwarder.forward(vp8(4, MIDDLE))
    await forwarder.forward(vp8(5, DELTA))

    assert down_seqs(down, 0) == [3, 4, 5]
    assert forwarder.packets_forwarded == 3


async def test_a_layer_switch_waits_for_that_layers_keyframe_and_asks_it_alone() -> None:
    up = FakeUpstream()
    forwarder = Forwarder("video", up, layers=3, keyframe_interval=0.0)
    low, high = FakeDown(layer=0), FakeDown(layer=2)
    for down in (low, high):
        forwarder.add(down)  # type: ignore[arg-type]
    assert sorted(up.plis) == [0, 2]
    await forwarder.forward(vp8(10, KEYFRAME), 0)
    await forwarder.forward(vp8(500, KEYFRAME), 2)
    assert down_seqs(low, 0) == [10] and down_seqs(high, 2) == [500]

    up.plis.clear()
    forwarder.select(high, 1)  # type: ignore[arg-type]  # its link narrowed
    assert up.plis == [1]  # a keyframe of the new layer, nothing for the others
    await forwarder.forward(vp8(501, DELTA), 2)  # the old layer flows until the switch
    await forwarder.forward(vp8(300, DELTA), 1)  # not a keyframe: no switch yet
    await forwarder.forward(vp8(301, KEYFRAME), 1)
    await forwarder.forward(vp8(502, DELTA), 2)  # after the switch: not sent
    await forwarder.forward(vp8(302, DELTA), 1)
    assert down_seqs(high, 2) == [500, 501]
    assert down_seqs(high, 1) == [301, 302]
    assert down_seqs(low, 0) == [10]
    assert high.munger is not None and high.munger.current == 1


async def test_a_subscribers_pli_asks_a_keyframe_of_its_own_layer() -> None:
    up = FakeUpstream()
    forwarder = Forwarder("video", up, layers=3, keyframe_interval=0.0)
    low, high = FakeDown(layer=0), FakeDown(layer=2)
    for down in (low, high):
        forwarder.add(down)  # type: ignore[arg-type]
    up.plis.clear()
    forwarder.keyframe_for(high)  # type: ignore[arg-type]
    assert up.plis == [2]


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
    assert down_seqs(shown, 0) == [1, 2, 3] and down_seqs(hidden, 0) == [1]
    plis = len(up.plis)
    forwarder.resume(hidden)  # type: ignore[arg-type]
    assert hidden.waiting and len(up.plis) == plis + 1  # it cannot decode before a keyframe
    await forwarder.forward(vp8(4, DELTA))
    await forwarder.forward(vp8(5, KEYFRAME))
    await forwarder.forward(vp8(6, DELTA))
    assert down_seqs(hidden, 0) == [1, 5, 6] and down_seqs(shown, 0) == [1, 2, 3, 4, 5, 6]


def test_a_nack_for_packets_past_their_use_asks_a_keyframe_instead() -> None:
    up = FakeUpstream()
    forwarder = Forwarder("video", up, layers=2, keyframe_interval=0.0)
    down = FakeDown(layer=1, stale=True)
    forwarder.add(down)  # type: ignore[arg-type]
    up.plis.clear()
    forwarder.retransmit(down, [1, 2])  # type: ignore[arg-type]
    assert down.resent == [1, 2] and up.plis == [1]


# A real DownTrack, its link a recorder: what goes on the wire for NACKs.


@dataclass
class RecordingLink:
    twcc_id: int | None = None
    packets: list[tuple[bytes, str]] = field(default_factory=list)

    def bind(self, dtls: Any) -> None:
        pass

    def send(self, data: bytes, kind: str, created: float, stream: object = None) -> None:
        self.packets.append((data, kind))


def video_down(clock: Clock) -> tuple[DownTrack, RecordingLink]:
    link = RecordingLink()
    down = DownTrack.create(RTCPeerConnection(), "video", "s", "s-video-0", link)
    down._clock = clock
    down._rtx_refill = clock.now
    down._pt, down._rtx_pt, down._ssrc, down._rtx_ssrc = 96, 97, 1111, 2222
    down.munger = Munger(initial_seq=1000)
    down.munger.switch_to(0)
    return down, link


def feed(down: DownTrack, clock: Clock, count: int) -> None:
    for seq in range(count):
        clock.now += 0.002
        payload = KEYFRAME if seq == 0 else DELTA
        down.forward(vp8(seq, payload), 0, seq == 0, clock.now, 0, b"\0\0\0")


async def test_nacks_are_answered_as_rtx_of_what_was_sent() -> None:
    clock = Clock()
    down, link = video_down(clock)
    feed(down, clock, 10)
    original = RtpPacket.parse(link.packets[3][0])
    link.packets.clear()

    sent, stale = down.resend([original.sequence_number, 60_000], clock.now)

    assert (sent, stale) == (1, False)
    data, kind = link.packets[0]
    rtx = RtpPacket.parse(data)
    assert kind == "rtx" and rtx.payload_type == 97 and rtx.ssrc == 2222
    assert rtx.timestamp == original.timestamp
    assert rtx.payload == original.sequence_number.to_bytes(2, "big") + original.payload


async def test_a_nack_storm_costs_only_its_subscribers_budget() -> None:
    clock = Clock()
    down, link = video_down(clock)
    feed(down, clock, HISTORY)
    link.packets.clear()
    first = down._last_seq_out - HISTORY + 1
    every = [(first + i) & 0xFFFF for i in range(HISTORY)]

    for _ in range(100):  # 10,000 NACKed packets within half a second
        clock.now += 0.005
        down.resend(every[-100:], clock.now)

    # A burst of 100, then 200 per second: ~200, never 10,000.
    assert 180 <= down.retransmissions <= 201
    assert down.retransmissions_refused > 9000
    assert len(link.packets) == down.retransmissions


async def test_packets_older_than_their_use_are_not_resent() -> None:
    clock = Clock()
    down, link = video_down(clock)
    feed(down, clock, 10)
    seq = down._last_seq_out
    clock.now += 1.5
    assert down.resend([seq], clock.now) == (0, True)
