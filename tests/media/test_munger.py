"""One down-track stays one continuous VP8 stream across simulcast switches and pauses."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from media.munger import RESYNC_GAP, RING_SIZE, Munger
from media.vp8 import parse_descriptor

FPS = 30
TICKS = 90000 // FPS


@dataclass(frozen=True)
class Packet:
    layer: int
    seq: int
    ts: int
    payload: bytes
    keyframe: bool
    marker: bool


@dataclass
class Layer:
    """One simulcast encoding as a publisher sends it: its own numbering, ``size`` packets a
    frame, picture ids of ``bits`` bits, TL0PICIDX and TIDs in a 0,2,1,2 pattern."""

    seq: int
    ts: int
    pid: int
    size: int
    bits: int = 15
    tl0: int = 0
    frames: int = 0

    def frame(self, layer: int, keyframe: bool) -> list[Packet]:
        tid = 0 if keyframe else (0, 2, 1, 2)[self.frames % 4]
        if tid == 0 and self.frames:
            self.tl0 = (self.tl0 + 1) % 256
        packets = []
        for i in range(self.size):
            first = 0x90 if i == 0 else 0x80
            if self.bits == 15:
                pid = bytes([0x80 | self.pid >> 8, self.pid & 0xFF])
            else:
                pid = bytes([self.pid])
            header = bytes([first, 0xE0]) + pid + bytes([self.tl0, tid << 6])
            body = bytes([0x00 if keyframe and i == 0 else 0x01]) + bytes([layer, i]) * 20
            packets.append(
                Packet(
                    layer, self.seq, self.ts, header + body, keyframe and i == 0, i == self.size - 1
                )
            )
            self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + TICKS) & 0xFFFFFFFF
        self.pid = (self.pid + 1) % (1 << self.bits)
        self.frames += 1
        return packets


@dataclass
class Out:
    packet: Packet
    seq: int
    ts: int
    payload: bytes
    now: float


@dataclass
class Publisher:
    """Three layers (q, h, f) with unrelated numbering; sends a keyframe of a layer when asked."""

    layers: list[Layer] = field(
        default_factory=lambda: [
            Layer(seq=65500, ts=4294960000, pid=32700, size=1),
            Layer(seq=1000, ts=123456, pid=100, size=2, bits=7),
            Layer(seq=40000, ts=2000000000, pid=5, size=4),
        ]
    )
    wanted: set[int] = field(default_factory=lambda: {0, 1, 2})  # keyframes asked for
    frame_no: int = 0

    def frame(self, only: tuple[int, ...] = (0, 1, 2)) -> list[Packet]:
        out = []
        for index in only:
            keyframe = index in self.wanted
            self.wanted.discard(index)
            out += self.layers[index].frame(index, keyframe)
        self.frame_no += 1
        return out


def play(munger: Munger, publisher: Publisher, frames: int, out: list[Out], **kw: object) -> None:
    """Send ``frames`` frames of every layer through ``munger``, asking for the target's
    keyframe as a forwarder would."""
    for _ in range(frames):
        now = publisher.frame_no / FPS
        for p in publisher.frame(**kw):  # type: ignore[arg-type]
            result = munger.rewrite(p.layer, p.seq, p.ts, p.payload, p.keyframe, p.marker, now)
            if result is not None:
                out.append(Out(p, *result, now))
        if munger.waiting_keyframe:
            assert munger.target is not None
            publisher.wanted.add(munger.target)


def assert_continuous(out: list[Out]) -> None:
    """Sequence numbers +1 each, timestamps never back, picture ids +1 a frame, TL0PICIDX +1 a
    base-layer (TID 0) frame, and the payload after the descriptor untouched."""
    for a, b in zip(out, out[1:], strict=False):
        assert (b.seq - a.seq) & 0xFFFF == 1, (a, b)
        da, db = parse_descriptor(a.payload), parse_descriptor(b.payload)
        assert da.picture_id is not None and db.picture_id is not None
        step = (db.picture_id - da.picture_id) % 32768
        assert da.tl0picidx is not None and db.tl0picidx is not None
        base_frame = db.begins_frame and db.tid == 0
        assert (db.tl0picidx - da.tl0picidx) % 256 == (1 if base_frame else 0), (a, b)
        if db.begins_frame:
            assert step == 1, (a, b)
            assert 0 < (b.ts - a.ts) & 0xFFFFFFFF < 1 << 31, (a, b)
        else:
            assert step == 0 and b.ts == a.ts, (a, b)
    for o in out:
        d = parse_descriptor(o.payload)
        up = parse_descriptor(o.packet.payload)
        assert o.payload[d.header_length :] == o.packet.payload[up.header_length :]


def test_nothing_is_sent_before_a_target_and_its_keyframe() -> None:
    munger = Munger()
    publisher = Publisher(wanted=set())
    out: list[Out] = []
    play(munger, publisher, 5, out)
    assert out == [] and munger.current is None
    munger.switch_to(1)
    assert munger.waiting_keyframe
    play(munger, publisher, 5, out)
    assert out[0].packet.keyframe and out[0].packet.layer == 1
    assert munger.current == munger.target == 1 and not munger.waiting_keyframe
    assert {o.packet.layer for o in out} == {1}


def test_switching_up_and_down_keeps_one_stream() -> None:
    munger = Munger(initial_seq=65530, initial_ts=4294967000, initial_picture_id=32760)
    publisher = Publisher(wanted=set())
    out: list[Out] = []
    switches = []
    for layer in (0, 1, 2, 0):
        munger.switch_to(layer)
        switches.append(len(out))
        play(munger, publisher, 40, out)
    assert_continuous(out)
    assert munger.switches == 4
    layers = [o.packet.layer for o in out]
    # Each switch lands on a keyframe of the new layer, and only then.
    changes = [i for i in range(1, len(out)) if layers[i] != layers[i - 1]]
    assert [layers[0]] + [layers[i] for i in changes] == [0, 1, 2, 0]
    assert all(out[i].packet.keyframe for i in [0, *changes])
    assert out[0].seq == 65530 and out[0].ts == 4294967000
    assert parse_descriptor(out[0].payload).picture_id == 32760
    # The media clock follows the wall clock across switches (the wait for a keyframe
    # included); a keyframe arriving at the same instant as the old layer's last packet is
    # one tick later, never the same timestamp. Numbers wrapped past 2^16, 2^32 and 2^15.
    for o in out:
        elapsed = (o.ts - out[0].ts) & 0xFFFFFFFF
        assert elapsed == pytest.approx((o.now - out[0].now) * 90000, abs=3.5)
    assert any(o.seq < 10 for o in out) and any(o.ts < 1000000 for o in out)
    assert any(parse_descriptor(o.payload).picture_id == 0 for o in out)
    assert munger.frames_sent == sum(o.packet.marker for o in out)


def test_nack_lookup_names_each_packets_layer_and_up_seq_after_switches() -> None:
    munger = Munger()
    publisher = Publisher()
    out: list[Out] = []
    for layer in (2, 0, 1):
        munger.switch_to(layer)
        play(munger, publisher, 20, out)
    for o in out[-RING_SIZE:]:
        assert munger.lookup(o.seq) == (o.packet.layer, o.packet.seq)
        again = munger.retransmission(o.seq, o.packet.payload)
        assert again == (o.ts, o.payload)
    assert munger.lookup((out[-1].seq + 1) & 0xFFFF) is None  # not sent yet
    assert munger.retransmission((out[-1].seq + 1) & 0xFFFF, out[-1].packet.payload) is None


def test_lookup_forgets_beyond_its_ring() -> None:
    munger = Munger()
    publisher = Publisher(layers=[Layer(seq=0, ts=0, pid=0, size=10)])
    out: list[Out] = []
    munger.switch_to(0)
    play(munger, publisher, RING_SIZE // 10 + 20, out, only=(0,))
    assert munger.lookup(out[0].seq) is None
    assert munger.lookup(out[-RING_SIZE].seq) == (0, out[-RING_SIZE].packet.seq)


def test_reordered_packets_map_to_their_own_numbers() -> None:
    munger = Munger()
    publisher = Publisher()
    munger.switch_to(2)
    reference: list[Out] = []
    play(munger, publisher, 3, reference)  # the switch keyframe, in order
    frames = [publisher.frame(only=(2,)) for _ in range(6)]
    in_order = [p for f in frames for p in f]
    # Swap neighbours and hold one packet back by a whole frame, as a network may.
    shuffled = in_order[:]
    for i in range(0, len(shuffled) - 1, 3):
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    late = shuffled.pop(5)
    shuffled.insert(12, late)
    results = {}
    for p in shuffled:
        r = munger.rewrite(p.layer, p.seq, p.ts, p.payload, p.keyframe, p.marker, 1.0)
        assert r is not None
        results[p.seq] = r
    out = [Out(p, *results[p.seq], 1.0) for p in in_order]
    assert_continuous(reference + out)


def test_a_late_packet_from_the_old_layer_is_dropped() -> None:
    munger = Munger()
    publisher = Publisher()
    munger.switch_to(0)
    out: list[Out] = []
    play(munger, publisher, 3, out)
    held = publisher.frame(only=(0,))  # in flight while the switch happens
    munger.switch_to(1)
    play(munger, publisher, 3, out, only=(1, 2))
    assert munger.current == 1
    play(munger, publisher, 3, out)
    for p in held:
        assert munger.rewrite(p.layer, p.seq, p.ts, p.payload, p.keyframe, p.marker, 1.0) is None
    # Back on layer 0, a packet from its earlier run comes too late: before the new run.
    munger.switch_to(0)
    play(munger, publisher, 3, out)
    assert munger.current == 0
    for p in held:
        assert munger.rewrite(p.layer, p.seq, p.ts, p.payload, p.keyframe, p.marker, 1.0) is None
    assert_continuous(out)


def test_a_packet_older_than_the_window_is_dropped() -> None:
    munger = Munger()
    publisher = Publisher(layers=[Layer(seq=10, ts=0, pid=0, size=50)])
    munger.switch_to(0)
    out: list[Out] = []
    play(munger, publisher, 1, out, only=(0,))
    old = publisher.frame(only=(0,))[0]  # lost upstream, comes back far too late
    play(munger, publisher, RING_SIZE // 50 + 1, out, only=(0,))
    assert munger.rewrite(0, old.seq, old.ts, old.payload, False, False, 9.0) is None


def test_pause_and_resume_continue_the_numbering_with_the_wall_clock() -> None:
    munger = Munger()
    publisher = Publisher()
    out: list[Out] = []
    munger.switch_to(2)
    play(munger, publisher, 10, out)
    munger.pause()
    assert (munger.current, munger.target) == (None, None)
    paused: list[Out] = []
    play(munger, publisher, 45, paused)  # 1.5 s: keyframes of every layer come and go
    publisher.wanted = {0, 1, 2}
    play(munger, publisher, 1, paused)
    assert paused == []
    munger.switch_to(0)
    resumed_at = len(out)
    play(munger, publisher, 10, out)
    assert_continuous(out)
    gap = out[resumed_at]
    before = out[resumed_at - 1]
    assert gap.packet.keyframe and gap.packet.layer == 0
    assert (gap.ts - before.ts) & 0xFFFFFFFF == round((gap.now - before.now) * 90000)
    assert gap.now - before.now > 1.5


def test_a_layer_that_never_arrives_leaves_the_current_one_flowing() -> None:
    munger = Munger()
    publisher = Publisher()
    out: list[Out] = []
    munger.switch_to(0)
    play(munger, publisher, 5, out, only=(0,))
    munger.switch_to(2)  # the publisher sends only layer 0
    play(munger, publisher, 30, out, only=(0,))
    assert (munger.current, munger.target) == (0, 2) and munger.waiting_keyframe
    assert len(out) == 35 and {o.packet.layer for o in out} == {0}
    assert_continuous(out)
    munger.switch_to(0)  # the caller gives up on it
    assert not munger.waiting_keyframe


def test_switching_back_before_the_keyframe_cancels_the_switch() -> None:
    munger = Munger()
    publisher = Publisher(wanted={0})
    out: list[Out] = []
    munger.switch_to(0)
    play(munger, publisher, 2, out)
    munger.switch_to(1)
    munger.switch_to(0)
    publisher.wanted = {1}  # a keyframe of layer 1 arrives anyway
    play(munger, publisher, 3, out)
    assert {o.packet.layer for o in out} == {0} and munger.switches == 1


def test_a_huge_jump_within_a_layer_waits_for_a_keyframe_without_a_hole() -> None:
    munger = Munger()
    layer = Layer(seq=100, ts=0, pid=0, size=2)
    publisher = Publisher(layers=[layer], wanted={0})
    out: list[Out] = []
    munger.switch_to(0)
    play(munger, publisher, 5, out, only=(0,))
    layer.seq = (layer.seq + RESYNC_GAP + 500) & 0xFFFF  # the publisher restarted its stream
    layer.ts, layer.pid = 777, 9
    play(munger, publisher, 1, out, only=(0,))  # not a keyframe: held back
    assert len(out) == 10 and munger.waiting_keyframe and munger.current is None
    play(munger, publisher, 3, out, only=(0,))  # play() asked for the keyframe
    assert len(out) == 16 and out[10].packet.keyframe and munger.current == 0
    assert_continuous(out)


def test_payload_that_does_not_parse_is_not_sent() -> None:
    munger = Munger()
    munger.switch_to(0)
    assert munger.rewrite(0, 1, 0, b"\x90\x80", True, False, 0.0) is None
    assert munger.current is None
    publisher = Publisher(wanted={0})
    out: list[Out] = []
    play(munger, publisher, 1, out, only=(0,))
    assert len(out) == 1
    p = publisher.frame(only=(0,))[0]
    assert munger.rewrite(0, p.seq, p.ts, b"", False, True, 0.1) is None


@pytest.mark.parametrize("layer", [-1, 1.5, "h", True])
def test_switch_to_refuses_what_is_not_a_layer(layer: object) -> None:
    munger = Munger()
    with pytest.raises(ValueError, match="simulcast layer must be a non-negative integer"):
        munger.switch_to(layer)  # type: ignore[arg-type]
    assert munger.target is None


def test_the_first_run_keeps_the_publishers_picture_ids_and_later_runs_follow_on() -> None:
    munger, publisher, out = Munger(), Publisher(), []
    munger.switch_to(2)
    play(munger, publisher, 5, out)
    first = [parse_descriptor(o.payload).picture_id for o in out if o.packet.layer == 2]
    assert first[0] == parse_descriptor(out[0].packet.payload).picture_id  # unchanged
    munger.switch_to(0)
    play(munger, publisher, 5, out)
    assert_continuous(out)  # after the switch, the ids go on from the last one sent
