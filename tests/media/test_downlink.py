"""A subscriber's downlink without a network: transport-wide numbering, feedback taken out of
the RTCP aiortc sees, the estimate it earns, and what is left when feedback is absurd or never
comes."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

from media.downlink import FALLBACK_BPS, TWCC_OFFSET, Downlink
from media.twcc import TwccRecorder

TWCC_ID = 5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rtp(seq: int, size: int = 1000, twcc: int | None = TWCC_ID) -> bytes:
    """A plain RTP packet as a down-track builds it: the transport-cc slot first."""
    ext = bytes([(twcc << 4) | 1, 0, 0, 0]) if twcc is not None else b""
    header = struct.pack("!BBHLLHH", 0x90, 96, seq, seq * 3000, 1234, 0xBEDE, len(ext) >> 2)
    return header + ext + bytes(size)


@dataclass
class Wire:
    packets: list[bytes] = field(default_factory=list)

    def __call__(self, data: bytes) -> None:
        self.packets.append(data)


async def paced_link(clock: Clock) -> tuple[Downlink, Wire]:
    link = Downlink(clock=clock)
    wire = Wire()
    link._write = wire  # type: ignore[method-assign]
    link.use_transport_cc(TWCC_ID)
    assert link._task is not None
    link._task.cancel()  # the test steps the link on its own clock
    return link, wire


def seq_of(data: bytes) -> int:
    return int.from_bytes(data[TWCC_OFFSET : TWCC_OFFSET + 2], "big")


async def test_packets_are_numbered_transport_wide_in_the_order_they_leave() -> None:
    clock = Clock()
    link, wire = await paced_link(clock)
    for i in range(5):
        link.send(rtp(100 + i), "video", clock.now)
    link.send(rtp(7, size=80), "audio", clock.now)  # audio leaves at once
    link.send(rtp(8, twcc=None), "video", clock.now)  # no slot: left alone
    for _ in range(50):
        clock.now += 0.005
        link.step(clock.now)
    stamped = [seq_of(p) for p in wire.packets if p[16] == (TWCC_ID << 4) | 1]
    assert stamped == list(range(6))
    assert seq_of(wire.packets[0]) == 0 and len(wire.packets[0]) == len(rtp(7, size=80))
    assert any(p == rtp(8, twcc=None) for p in wire.packets)


async def test_honest_feedback_earns_an_estimate() -> None:
    clock = Clock()
    link, wire = await paced_link(clock)
    recorder = TwccRecorder()
    start = link.estimate
    seq = 0
    for _ in range(400):  # 2 s at ~1.6 Mbit/s, all received 50 ms later
        clock.now += 0.005
        link.send(rtp(seq), "video", clock.now)
        seq += 1
        link.step(clock.now)
        for data in wire.packets:
            recorder.record(seq_of(data), clock.now + 0.05)
        wire.packets.clear()
        if seq % 20 == 0:
            link._feedback(recorder.feedback(1, 2))
    assert link.feedback_packets >= 15 and link.feedback_refused == 0
    assert link.estimator is not None and link.estimator.rtt < 0.2
    assert link.estimate is not None and start is not None and link.estimate > FALLBACK_BPS


async def test_absurd_and_malformed_feedback_changes_nothing() -> None:
    clock = Clock()
    link, wire = await paced_link(clock)
    for i in range(20):
        link.send(rtp(i), "video", clock.now)
        clock.now += 0.005
        link.step(clock.now)
    before = link.estimate
    ahead = TwccRecorder()
    for s in range(30_000, 30_050):  # never sent: far ahead of what left
        ahead.record(s, clock.now)
    link._feedback(ahead.feedback(1, 2))
    link._feedback([b"\x8f\xcd\x00\x01\x00\x00\x00\x01"])  # a transport-cc header, no body
    assert link.feedback_refused == 1
    assert link.estimate == before


async def test_a_subscriber_that_never_sends_feedback_gets_a_safe_rate_not_everything() -> None:
    clock = Clock()
    link, wire = await paced_link(clock)
    sent_bytes = []
    for tick in range(1200):  # 6 s of a 2.3 Mbit/s offer, no feedback ever
        clock.now += 0.005
        link.send(rtp(tick, size=1400), "video", clock.now)
        link.step(clock.now)
        sent_bytes.append(sum(len(p) for p in wire.packets))
        wire.packets.clear()
    last_second = sum(sent_bytes[-200:]) * 8
    assert link.estimate is not None and link.estimate <= FALLBACK_BPS
    assert last_second <= FALLBACK_BPS * 1.5 * 1.1  # the pacer's factor, and a burst


@dataclass
class FakeDtls:
    """What Downlink.bind reaches: the SRTP context, the ICE connection, the RTCP entry."""

    seen: list[bytes] = field(default_factory=list)
    _tx_srtp: Any = None
    transport: Any = None

    def __post_init__(self) -> None:
        self.transport = type("T", (), {"_connection": None})()

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self.seen.append(data)


async def test_feedback_is_taken_out_of_the_rtcp_aiortc_sees() -> None:
    clock = Clock()
    link, wire = await paced_link(clock)
    dtls = FakeDtls()
    link.bind(dtls)
    link.send(rtp(1), "audio", clock.now)
    recorder = TwccRecorder()
    recorder.record(0, clock.now)
    (feedback,) = recorder.feedback(1, 2)
    receiver_report = struct.pack("!BBHL", 0x80, 201, 1, 1)  # an empty RR
    await dtls._handle_rtcp_data(receiver_report + feedback)

    assert dtls.seen == [receiver_report]
    assert link.feedback_packets == 1


@pytest.mark.parametrize("data", [b"\x80", b"\x80\xc9\x00\x09\x00"])
async def test_rtcp_that_does_not_split_goes_to_aiortc_untouched(data: bytes) -> None:
    link, _ = await paced_link(Clock())
    dtls = FakeDtls()
    link.bind(dtls)
    await dtls._handle_rtcp_data(data)
    assert dtls.seen == [data]


async def test_a_probe_pads_up_to_its_rate_and_no_faster() -> None:
    clock = Clock()
    link, wire = await paced_link(clock)
    link.padder = lambda: rtp(0, size=250)
    recorder = TwccRecorder()
    link.send(rtp(1), "video", clock.now)
    link.step(clock.now)
    for data in wire.packets:
        recorder.record(seq_of(data), clock.now + 0.02)
    wire.packets.clear()
    link._feedback(recorder.feedback(1, 2))  # feedback flows: the first probe is due
    probe_bytes, target = 0, 0
    for _ in range(100):
        clock.now += 0.005
        probing = link._probe_until is not None
        link.step(clock.now)
        if probing or link._probe_until is not None:
            target = link._probe_bps
            probe_bytes += sum(len(p) for p in wire.packets)
        wire.packets.clear()
        if target and link._probe_until is None:
            break
    assert link.probes == 1 and target > 0
    assert link.estimator is not None
    wanted = target * link.estimator.probe_seconds / 8
    assert 0.6 * wanted <= probe_bytes <= 1.25 * wanted + 300, (probe_bytes, wanted)
