"""Transport-cc feedback: the recorder's packets parse back to what it recorded; malformed
packets are refused with a reason; the send history matches feedback to what was sent and
ignores what makes no sense."""

from __future__ import annotations

import random
import struct

import pytest

from media.twcc import (
    SendHistory,
    TwccFeedback,
    TwccRecorder,
    is_twcc,
    parse_feedback,
    split_compound,
)

TICK = 1 / 4000  # 250 µs


def round_trip(recorder: TwccRecorder) -> list[TwccFeedback]:
    packets = recorder.feedback(0x1111, 0x2222)
    for data in packets:
        assert len(data) % 4 == 0
        assert len(data) <= 1200
        assert is_twcc(data)
    return [parse_feedback(data) for data in packets]


def arrivals(feedbacks: list[TwccFeedback]) -> list[tuple[int, float | None]]:
    return [p for fb in feedbacks for p in fb.packets]


def assert_times(got: list[tuple[int, float | None]], want: list[tuple[int, float | None]]) -> None:
    """Same sequence numbers, same received/lost, arrival times equal to a tick (the first
    feedback's origin is the recorder's clock origin)."""
    assert [s for s, _ in got] == [s for s, _ in want]
    for (seq, a), (_, b) in zip(got, want, strict=True):
        if b is None:
            assert a is None, seq
        else:
            assert a is not None and abs(a - b) <= TICK / 2 + 1e-9, (seq, a, b)


def test_in_order_packets_round_trip_with_their_arrival_times() -> None:
    recorder = TwccRecorder()
    want: list[tuple[int, float | None]] = []
    for seq in range(100):
        at = 1000.0 + seq * 0.0013
        recorder.record(seq, at)
        want.append((seq, at))
    [fb] = round_trip(recorder)
    assert (fb.sender_ssrc, fb.media_ssrc, fb.base_seq, fb.fb_count) == (0x1111, 0x2222, 0, 0)
    assert fb.reference_time == int(1000.0 / 0.064)
    assert_times(fb.packets, want)


def test_feedback_covers_only_what_arrived_since_the_previous_call() -> None:
    recorder = TwccRecorder()
    for seq in range(10):
        recorder.record(seq, seq * 0.01)
    first = round_trip(recorder)
    assert recorder.feedback(1, 2) == []
    for seq in range(10, 15):
        recorder.record(seq, seq * 0.01)
    second = round_trip(recorder)
    assert [s for s, _ in arrivals(first)] == list(range(10))
    assert [s for s, _ in arrivals(second)] == list(range(10, 15))
    assert second[0].fb_count == first[-1].fb_count + 1


def test_sequence_numbers_wrap_at_65535() -> None:
    recorder = TwccRecorder()
    seqs = [*range(65500, 65536), *range(0, 40)]
    for i, seq in enumerate(seqs):
        recorder.record(seq, 5.0 + i * 0.002)
    [fb] = round_trip(recorder)
    assert fb.base_seq == 65500
    assert_times(fb.packets, [(seq, 5.0 + i * 0.002) for i, seq in enumerate(seqs)])


def test_reordered_arrival_gives_a_negative_delta() -> None:
    recorder = TwccRecorder()
    recorder.record(0, 2.000)
    recorder.record(2, 2.004)
    recorder.record(1, 2.009)  # overtaken: seq 2's delta from seq 1 is -5 ms
    recorder.record(3, 2.010)
    [fb] = round_trip(recorder)
    assert_times(fb.packets, [(0, 2.000), (1, 2.009), (2, 2.004), (3, 2.010)])


def test_loss_runs_are_reported_lost() -> None:
    recorder = TwccRecorder()
    got = [0, 1, 2, *range(20, 25), 27, 29, 31, 1000]
    for seq in got:
        recorder.record(seq, 1.0 + seq * 0.001)
    feedbacks = round_trip(recorder)
    want = [(s, 1.0 + s * 0.001 if s in got else None) for s in range(1001)]
    assert_times(arrivals(feedbacks), want)
    assert sum(len(parse.packets) for parse in feedbacks) == 1001
    assert len(recorder.feedback(1, 2)) == 0


def test_a_late_packet_reported_lost_is_reported_again_with_its_neighbours() -> None:
    recorder = TwccRecorder()
    for seq in [0, 1, 2, 4, 5]:
        recorder.record(seq, seq * 0.01)
    assert_times(
        arrivals(round_trip(recorder)), [(s, None if s == 3 else s * 0.01) for s in range(6)]
    )
    recorder.record(3, 0.2)
    recorder.record(6, 0.06)
    assert_times(arrivals(round_trip(recorder)), [(3, 0.2), (4, 0.04), (5, 0.05), (6, 0.06)])


def test_duplicates_keep_the_first_arrival() -> None:
    recorder = TwccRecorder()
    recorder.record(7, 1.0)
    recorder.record(7, 1.5)
    recorder.record(8, 1.01)
    assert_times(arrivals(round_trip(recorder)), [(7, 1.0), (8, 1.01)])


def test_sixteen_bit_deltas_and_a_gap_too_long_for_them_starts_a_new_packet() -> None:
    recorder = TwccRecorder()
    times = [3.0, 3.1, 3.1 + 9.0, 3.1 + 9.0 + 0.001]  # 100 ms (large), then 9 s (too large)
    for seq, at in enumerate(times):
        recorder.record(seq, at)
    feedbacks = round_trip(recorder)
    assert len(feedbacks) == 2
    assert [fb.base_seq for fb in feedbacks] == [0, 2]
    assert feedbacks[1].fb_count == feedbacks[0].fb_count + 1
    assert_times(arrivals(feedbacks), list(enumerate(times)))


def test_many_packets_are_split_under_the_mtu() -> None:
    recorder = TwccRecorder()
    rng = random.Random(7)
    want: list[tuple[int, float | None]] = []
    at = 10.0
    for seq in range(3000):
        at += rng.choice([0.0002, 0.001, 0.09])
        if seq % 2:  # alternate lost/received with a mix of small and large deltas
            recorder.record(seq, at)
            want.append((seq, at))
        else:
            want.append((seq, None))
    feedbacks = round_trip(recorder)  # asserts every packet ≤ 1200 bytes
    assert len(feedbacks) > 1
    got = arrivals(feedbacks)
    assert_times(got, want[1:])  # the first received is where feedback starts


def test_memory_is_bounded_when_feedback_is_never_asked_for() -> None:
    recorder = TwccRecorder()
    for n in range(30000):
        recorder.record(n & 0xFFFF, n * 0.0005)
    assert recorder.pending() == TwccRecorder.WINDOW
    assert len(recorder._arrivals) <= TwccRecorder.WINDOW + TwccRecorder.HISTORY
    got = arrivals(round_trip(recorder))
    assert [s for s, _ in got] == [n & 0xFFFF for n in range(30000 - TwccRecorder.WINDOW, 30000)]


def test_a_jump_far_ahead_restarts_and_a_straggler_far_behind_is_ignored() -> None:
    recorder = TwccRecorder()
    for seq in range(3000):
        recorder.record(seq, seq * 0.001)
    round_trip(recorder)
    recorder.record(3000 - TwccRecorder.HISTORY - 5, 3.5)  # older than the kept history
    assert recorder.feedback(1, 2) == []
    recorder.record(3000 + TwccRecorder.WINDOW + 100, 4.0)
    assert_times(arrivals(round_trip(recorder)), [(3000 + TwccRecorder.WINDOW + 100, 4.0)])


def test_many_packets_from_far_behind_are_a_restart() -> None:
    recorder = TwccRecorder()
    for seq in range(40000, 41000):
        recorder.record(seq, 0.0)
    round_trip(recorder)
    for seq in range(20000, 20000 + TwccRecorder.STRAYS + 1):
        recorder.record(seq, 1.0)
    [fb] = round_trip(recorder)
    assert fb.base_seq == 20000 + TwccRecorder.STRAYS


def test_record_refuses_a_sequence_number_that_is_not_16_bit() -> None:
    with pytest.raises(ValueError, match="70000"):
        TwccRecorder().record(70000, 0.0)


def test_padding_is_signalled_as_libwebrtc_does() -> None:
    recorder = TwccRecorder()
    recorder.record(1, 0.0)  # 20 bytes + one chunk (2) + one delta (1): 1 byte of padding
    [data] = recorder.feedback(5, 6)
    assert len(data) == 24
    assert data[0] == 0x80 | 0x20 | 15 and data[1] == 205
    assert struct.unpack("!H", data[2:4])[0] == 5
    assert data[-1] == 1


def one_packet() -> bytes:
    recorder = TwccRecorder()
    for seq in range(10):
        recorder.record(seq, seq * 0.1)
    [data] = recorder.feedback(1, 2)
    return data


def with_count(data: bytes, count: int) -> bytes:
    return data[:14] + struct.pack("!H", count) + data[16:]


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda d: d[:12], "12 bytes"),
        (lambda d: d[:-4], "only"),
        (lambda d: b"\x40" + d[1:], "version 1"),
        (lambda d: d[:1] + b"\xce" + d[2:], "type 206"),
        (lambda d: bytes([d[0] & ~0x1F | 1]) + d[1:], "format 1"),
        (lambda d: with_count(d, 0), "status count 0"),
        (lambda d: with_count(d, 40000), "status count 40000"),
        (lambda d: with_count(d, 300), "status chunks end"),
        (lambda d: d[:-1] + b"\x00", "padding length 0"),
        (lambda d: d[:20] + b"\x60\x0a" + d[22:], "reserved"),
    ],
)
def test_malformed_feedback_is_refused_with_a_reason(mangle: object, reason: str) -> None:
    data = mangle(one_packet())  # type: ignore[operator]
    with pytest.raises(ValueError, match=reason):
        parse_feedback(data)


def test_deltas_past_the_end_are_refused() -> None:
    # 10 received statuses in one run-length chunk but only 2 delta bytes.
    header = struct.pack("!BBH", 0x80 | 15, 205, 5)
    body = struct.pack("!IIHHI", 1, 2, 0, 10, 0) + struct.pack("!H", (1 << 13) | 10) + b"\x01\x01"
    with pytest.raises(ValueError, match="receive delta 2 runs past the end"):
        parse_feedback(header + body)


def test_random_garbage_only_ever_raises_value_error() -> None:
    rng = random.Random(1)
    valid = one_packet()
    for _ in range(3000):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))] if rng.random() < 0.3 else data
        try:
            fb = parse_feedback(bytes(data))
        except ValueError:
            continue
        assert len(fb.packets) <= 16384


def test_split_compound_finds_the_feedback_among_other_rtcp() -> None:
    rr = struct.pack("!BBHI", 0x80, 201, 1, 99)
    fb = one_packet()
    parts = split_compound(rr + fb)
    assert parts == [rr, fb]
    assert [is_twcc(p) for p in parts] == [False, True]
    with pytest.raises(ValueError, match="past the end"):
        split_compound(rr + fb[:-4])
    with pytest.raises(ValueError, match="stray"):
        split_compound(rr + b"\x80")


# The send side.


def feedback_for(received: dict[int, float], lost: list[int]) -> TwccFeedback:
    """What the subscriber would send, built by the recorder and parsed back."""
    recorder = TwccRecorder()
    for seq, at in received.items():
        recorder.record(seq, at)
    fbs = [parse_feedback(d) for d in recorder.feedback(1, 2)]
    assert all(s in received or s in lost for s, _ in arrivals(fbs))
    assert len(fbs) == 1
    return fbs[0]


def test_send_history_matches_feedback_to_what_was_sent() -> None:
    history = SendHistory()
    for seq in range(10):
        history.on_sent(seq, 1000 + seq, 50.0 + seq * 0.01, probe=seq >= 8)
    received = {s: 1.0 + s * 0.01 for s in range(10) if s not in (3, 4)}
    results = history.on_feedback(feedback_for(received, [3, 4]))
    assert [r.seq for r in results] == list(range(10))
    assert [r.size for r in results] == [1000 + s for s in range(10)]
    assert [r.send_time for r in results] == [50.0 + s * 0.01 for s in range(10)]
    assert [r.arrival_time is None for r in results] == [s in (3, 4) for s in range(10)]
    assert [r.probe for r in results] == [s >= 8 for s in range(10)]
    assert history.on_feedback(feedback_for(received, [3, 4])) == []  # nothing new


def test_send_history_unwraps_sequence_numbers() -> None:
    history = SendHistory()
    seqs = [*range(65530, 65536), *range(0, 6)]
    for i, seq in enumerate(seqs):
        history.on_sent(seq, 500, i * 0.01)
    results = history.on_feedback(feedback_for({s: i * 0.01 for i, s in enumerate(seqs)}, []))
    assert [r.seq for r in results] == list(range(65530, 65542))


def test_a_packet_reported_lost_then_received_is_reported_once_more() -> None:
    history = SendHistory()
    for seq in range(3):
        history.on_sent(seq, 100, 0.0)
    first = history.on_feedback(TwccFeedback(1, 2, 0, 0, 0, [(0, 0.1), (1, None), (2, 0.12)]))
    assert [r.arrival_time for r in first] == [0.1, None, 0.12]
    again = history.on_feedback(TwccFeedback(1, 2, 1, 1, 0, [(1, 0.2), (2, 0.12)]))
    assert [(r.seq, r.arrival_time) for r in again] == [(1, 0.2)]


@pytest.mark.parametrize(
    ("base", "count"),
    [
        (130, 1),  # never sent (ahead of the last sent)
        (100, 30000),  # claims 30,000 packets from a base that was sent
        ((100 + 30000) & 0xFFFF, 5),  # 30,000 ahead
        ((100 - 30000) & 0xFFFF, 5),  # wrapped base far behind, out of the ring
    ],
)
def test_absurd_feedback_is_ignored(base: int, count: int) -> None:
    history = SendHistory(size=4096)
    for seq in range(5000):
        history.on_sent(seq & 0xFFFF, 1200, seq * 0.001)
    for seq in range(5000, 5000 + 100 + 29):
        history.on_sent(seq & 0xFFFF, 1200, seq * 0.001)  # last sent: 5128
    packets: list[tuple[int, float | None]] = [((base + i) & 0xFFFF, 1.0) for i in range(count)]
    fb = TwccFeedback(1, 2, (base + 5000) & 0xFFFF, 0, 0, packets)
    assert history.on_feedback(fb) == []


def test_hostile_feedback_never_raises() -> None:
    rng = random.Random(3)
    history = SendHistory()
    for seq in range(60000, 60000 + 6000):
        history.on_sent(seq & 0xFFFF, 1000, seq * 0.001)
    for _ in range(300):
        n = rng.randint(0, 400)
        packets = [(0, rng.choice([None, rng.uniform(-1e6, 1e6)])) for _ in range(n)]
        fb = TwccFeedback(1, 2, rng.randrange(65536), 0, rng.randrange(1 << 24), packets)
        for r in history.on_feedback(fb):
            assert 60000 <= r.seq < 66000


def test_reference_time_wrap_keeps_arrival_times_continuous() -> None:
    history = SendHistory()
    history.on_sent(0, 100, 0.0)
    history.on_sent(1, 100, 0.05)
    last_ref = (1 << 24) - 1
    [a] = history.on_feedback(TwccFeedback(1, 2, 0, 0, last_ref, [(0, last_ref * 0.064)]))
    [b] = history.on_feedback(TwccFeedback(1, 2, 1, 1, 0, [(1, 0.010)]))
    assert a.arrival_time is not None and b.arrival_time is not None
    assert b.arrival_time - a.arrival_time == pytest.approx(0.074)


def test_on_sent_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="65536"):
        SendHistory().on_sent(65536, 10, 0.0)
    with pytest.raises(ValueError, match="-1"):
        SendHistory().on_sent(1, -1, 0.0)
