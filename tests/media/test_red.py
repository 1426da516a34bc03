"""RED for Opus: the encoder and decoder on their own, the SDP that negotiates it, and what
aiortc and Chromium make of that SDP (Chromium also plays our RED through packet loss)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket, is_rtcp
from aiortc.sdp import SessionDescription
from playwright.async_api import Browser, async_playwright

from media.red import MAX_BLOCKS, RedBlock, RedEncoder, decode
from media.redsdp import red_payload_type, with_red
from media.sdp import parse_description

OPUS = 111
P1, P2, P3, P4 = (bytes([n]) * (10 + n) for n in range(1, 5))


def blocks(data: bytes) -> list[tuple[int, bytes]]:
    return [(b.ts_offset, b.payload) for b in decode(data)]


# --- the encoder and decoder -------------------------------------------------------------------


def test_first_packet_goes_alone_behind_a_one_byte_header() -> None:
    data = RedEncoder().encode(P1, 1000, OPUS)
    assert data == bytes([OPUS]) + P1
    assert decode(data) == [RedBlock(0, OPUS, P1)]


def test_block_header_is_laid_out_as_rfc_2198_says() -> None:
    encoder = RedEncoder(distance=1)
    encoder.encode(b"abcde", 0, OPUS)
    data = encoder.encode(b"xyz", 960, OPUS)
    # F=1 | PT 111, then offset 960 in 14 bits and length 5 in 10 bits; primary header F=0.
    assert (
        data
        == bytes([0x80 | OPUS])
        + (960 << 10 | 5).to_bytes(3, "big")
        + bytes([OPUS])
        + b"abcde"
        + b"xyz"
    )


def test_distance_one_carries_the_previous_packet() -> None:
    encoder = RedEncoder(distance=1)
    encoder.encode(P1, 0, OPUS)
    assert blocks(encoder.encode(P2, 960, OPUS)) == [(960, P1), (0, P2)]
    assert blocks(encoder.encode(P3, 1920, OPUS)) == [(960, P2), (0, P3)]


def test_distance_two_carries_the_two_previous_packets_oldest_first() -> None:
    encoder = RedEncoder(distance=2)
    encoder.encode(P1, 0, OPUS)
    assert blocks(encoder.encode(P2, 960, OPUS)) == [(960, P1), (0, P2)]
    assert blocks(encoder.encode(P3, 1920, OPUS)) == [(1920, P1), (960, P2), (0, P3)]
    assert blocks(encoder.encode(P4, 2880, OPUS)) == [(1920, P2), (960, P3), (0, P4)]
    assert {b.pt for b in decode(encoder.encode(P1, 3840, OPUS))} == {OPUS}


def test_timestamps_wrapping_around_are_still_moving_forward() -> None:
    encoder = RedEncoder()
    encoder.encode(P1, 0xFFFFFFFF - 479, OPUS)
    assert blocks(encoder.encode(P2, 480, OPUS)) == [(960, P1), (0, P2)]


def test_dtx_packets_are_sent_but_never_repeated() -> None:
    encoder = RedEncoder(distance=2)
    encoder.encode(P1, 0, OPUS)
    dtx = encoder.encode(b"\x08", 960, OPUS)
    assert blocks(dtx) == [(960, P1), (0, b"\x08")]
    assert blocks(encoder.encode(b"", 1920, OPUS)) == [(1920, P1), (0, b"")]
    assert blocks(encoder.encode(P2, 2880, OPUS)) == [(2880, P1), (0, P2)]


def test_speech_after_a_dtx_pause_does_not_carry_audio_from_before_it() -> None:
    encoder = RedEncoder(distance=2)
    encoder.encode(P1, 0, OPUS)
    encoder.encode(b"\x08", 960, OPUS)
    encoder.encode(b"\x08", 960 + 19200, OPUS)  # DTX: one packet per 400 ms
    # P1 is now 39360 samples back: beyond a 14-bit offset.
    assert blocks(encoder.encode(P2, 960 + 2 * 19200, OPUS)) == [(0, P2)]


def test_offset_limit_is_fourteen_bits() -> None:
    within = RedEncoder()
    within.encode(P1, 0, OPUS)
    assert blocks(within.encode(P2, (1 << 14) - 1, OPUS)) == [((1 << 14) - 1, P1), (0, P2)]
    beyond = RedEncoder()
    beyond.encode(P1, 0, OPUS)
    assert blocks(beyond.encode(P2, 1 << 14, OPUS)) == [(0, P2)]


def test_timestamp_going_backwards_resets_the_history() -> None:
    encoder = RedEncoder(distance=2)
    encoder.encode(P1, 10000, OPUS)
    encoder.encode(P2, 10960, OPUS)
    assert blocks(encoder.encode(P3, 5000, OPUS)) == [(0, P3)]
    assert blocks(encoder.encode(P4, 5960, OPUS)) == [(960, P3), (0, P4)]
    assert blocks(encoder.encode(P1, 5960, OPUS)) == [(0, P1)]  # not forward either


def test_a_big_gap_resets_the_history() -> None:
    encoder = RedEncoder(distance=2, max_gap=2000)
    encoder.encode(P1, 0, OPUS)
    encoder.encode(P2, 960, OPUS)
    # 3000 samples fit a 14-bit offset: only the reset keeps P1 and P2 out.
    assert blocks(encoder.encode(P3, 3960, OPUS)) == [(0, P3)]
    assert blocks(encoder.encode(P4, 4920, OPUS)) == [(960, P3), (0, P4)]


def test_reset_forgets_the_history() -> None:
    encoder = RedEncoder()
    encoder.encode(P1, 0, OPUS)
    encoder.reset()
    assert blocks(encoder.encode(P2, 960, OPUS)) == [(0, P2)]


def test_a_block_too_long_for_ten_bits_is_not_repeated() -> None:
    encoder = RedEncoder(distance=2, max_size=4000)
    encoder.encode(P1, 0, OPUS)
    encoder.encode(b"x" * 1024, 960, OPUS)
    assert blocks(encoder.encode(P2, 1920, OPUS)) == [(1920, P1), (0, P2)]
    encoder.encode(b"y" * 1023, 2880, OPUS)
    assert blocks(encoder.encode(P3, 3840, OPUS)) == [(1920, P2), (960, b"y" * 1023), (0, P3)]


def test_redundancy_over_the_size_limit_drops_the_oldest_first() -> None:
    encoder = RedEncoder(distance=2, max_size=1200)
    encoder.encode(b"a" * 600, 0, OPUS)
    encoder.encode(b"b" * 600, 960, OPUS)
    data = encoder.encode(P1, 1920, OPUS)
    assert blocks(data) == [(960, b"b" * 600), (0, P1)]
    assert len(data) <= 1200
    big = encoder.encode(b"c" * 1300, 2880, OPUS)  # a primary alone over the limit still goes
    assert blocks(big) == [(0, b"c" * 1300)]


def test_distance_zero_sends_primaries_only() -> None:
    encoder = RedEncoder(distance=0)
    encoder.encode(P1, 0, OPUS)
    assert blocks(encoder.encode(P2, 960, OPUS)) == [(0, P2)]


def test_encoder_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="distance"):
        RedEncoder(distance=MAX_BLOCKS)
    with pytest.raises(ValueError, match="payload type"):
        RedEncoder().encode(P1, 0, 128)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", "ends inside its block headers"),
        (bytes([0x80 | OPUS, 0, 0]), "ends inside a block header"),
        (bytes([0x80 | OPUS]) + (960 << 10 | 5).to_bytes(3, "big"), "block headers"),
        (bytes([0x80 | OPUS]) + (960 << 10 | 50).to_bytes(3, "big") + bytes([OPUS]) + P1, "past"),
        ((bytes([0x80 | OPUS]) + (960 << 10).to_bytes(3, "big")) * MAX_BLOCKS + b"\x6f", "more"),
    ],
)
def test_malformed_red_is_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode(payload)


def test_decode_accepts_the_most_blocks_allowed() -> None:
    header = bytes([0x80 | OPUS]) + (960 << 10).to_bytes(3, "big")
    assert len(decode(header * (MAX_BLOCKS - 1) + bytes([OPUS]) + P1)) == MAX_BLOCKS


# --- SDP ---------------------------------------------------------------------------------------


@pytest.fixture
async def aiortc_offer() -> AsyncIterator[str]:
    """A down offer as aiortc writes it: send-only audio and video."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    yield pc.localDescription.sdp
    await pc.close()


def audio_section(sdp: str, index: int = 0) -> list[str]:
    sections = sdp.replace("\r\n", "\n").split("\nm=")[1:]
    audio = [s for s in sections if s.startswith("audio")]
    return ("m=" + audio[index]).split("\n")


def test_with_red_adds_red_after_opus_in_an_aiortc_offer(aiortc_offer: str) -> None:
    offer = with_red(aiortc_offer)
    section = audio_section(offer)
    opus = next(x for x in section if x.endswith(" opus/48000/2")).split(" ")[0][9:]
    formats = section[0].split(" ")[3:]
    assert formats[formats.index(opus) + 1] == "63"
    at = section.index("a=rtpmap:63 red/48000/2")
    assert section[at + 1] == f"a=fmtp:63 {opus}/{opus}"
    assert section.index(f"a=rtpmap:{opus} opus/48000/2") < at
    # Both parsers still take it, and red is there for the browser to see.
    parsed = parse_description(offer, "offer")
    codecs = {c.payloadType: c for c in parsed.media[0].rtp.codecs}
    assert codecs[63].mimeType == "audio/red"
    assert codecs[63].parameters == {f"{opus}/{opus}": None}
    assert offer.count("red/48000/2") == 1  # not in the video section
    assert "\r\n" in offer and "\n" not in offer.replace("\r\n", "")
    assert with_red(offer) == offer


def test_with_red_picks_a_payload_type_no_section_uses_when_63_is_taken() -> None:
    offer = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 63",
            "a=mid:0",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10",
            "a=rtpmap:63 telephone-event/8000",
            "m=video 9 UDP/TLS/RTP/SAVPF 127",
            "a=mid:1",
            "a=rtpmap:127 VP8/90000",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:2",
            "a=rtpmap:111 opus/48000/2",
            "",
        ]
    )
    out = with_red(offer)
    for index in (0, 1):
        section = audio_section(out, index)
        assert section[0].endswith(" 111 126" + (" 63" if index == 0 else ""))
        at = section.index("a=rtpmap:126 red/48000/2")
        after = "a=fmtp:111 minptime=10" if index == 0 else "a=rtpmap:111 opus/48000/2"
        assert section[at - 1] == after
        assert section[at + 1] == "a=fmtp:126 111/111"
        assert red_payload_type(out, str(index * 2)) == 126


def test_with_red_leaves_sections_without_opus_or_rejected_alone() -> None:
    offer = "\r\n".join(
        ["v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=rtpmap:0 PCMU/8000", "m=audio 0 RTP/AVP 111"]
    )
    assert with_red(offer) == offer


CHROME_ANSWER = "\r\n".join(
    [
        "v=0",
        "o=- 2524908471673383445 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 63 9 0 8",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=recvonly",
        "a=rtcp-mux",
        "a=rtpmap:96 opus/48000/2",
        "a=fmtp:96 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 96/96",
        "a=rtpmap:9 G722/8000",
        "m=video 9 UDP/TLS/RTP/SAVPF 97",
        "a=mid:1",
        "a=recvonly",
        "a=rtpmap:97 VP8/90000",
        "",
    ]
)


def test_red_payload_type_reads_a_chrome_answer() -> None:
    assert red_payload_type(CHROME_ANSWER, "0") == 63
    assert red_payload_type(CHROME_ANSWER.replace("\r\n", "\n"), "0") == 63
    assert red_payload_type(CHROME_ANSWER.replace("63", "121"), "0") == 121


def test_red_payload_type_is_none_for_other_sections_and_answers_without_red() -> None:
    assert red_payload_type(CHROME_ANSWER, "1") is None  # video
    assert red_payload_type(CHROME_ANSWER, "7") is None  # no such mid
    without = CHROME_ANSWER.replace(" 96 63 9", " 96 9").replace(
        "a=rtpmap:63 red/48000/2\r\na=fmtp:63 96/96\r\n", ""
    )
    assert "red" not in without
    assert red_payload_type(without, "0") is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("m=audio 9", "m=audio 0"),  # section rejected
        ("a=recvonly\r\na=rtcp-mux\r\na=rtpmap:96", "a=inactive\r\na=rtcp-mux\r\na=rtpmap:96"),
        ("96 63 9", "96 9"),  # red not in the m= line
        ("63", "80"),  # payload type in the RTCP range
        ("63", "200"),  # not a payload type
        ("63", "34"),  # static range
        ("63", "063"),
        ("a=fmtp:63 96/96", "a=fmtp:63 96/0"),  # red over something else than Opus
        ("a=fmtp:63 96/96", "a=fmtp:63 97/97"),
        ("a=fmtp:63 96/96", "a=fmtp:63 "),
        ("a=fmtp:63 96/96", "a=fmtp:63 " + "/".join(["96"] * 9)),
        ("a=fmtp:63 96/96\r\n", ""),  # no fmtp
        ("a=fmtp:63 96/96", "a=fmtp:63 96/96\r\na=fmtp:63 96/96"),
        ("a=rtpmap:9 G722/8000", "a=rtpmap:63 PCMU/8000"),  # 63 named twice
        ("a=rtpmap:9 G722/8000", "a=rtpmap:9 opus/48000/2"),  # two Opus: which one?
        ("a=rtpmap:63 red/48000/2", "a=rtpmap:63 red/90000"),
    ],
)
def test_a_hostile_answer_does_not_get_red(old: str, new: str) -> None:
    assert old in CHROME_ANSWER
    assert red_payload_type(CHROME_ANSWER.replace(old, new), "0") is None


def test_garbage_never_raises() -> None:
    rng = random.Random(14)
    assert red_payload_type(None, "0") is None  # type: ignore[arg-type]
    assert red_payload_type(CHROME_ANSWER, 0) is None  # type: ignore[arg-type]
    for _ in range(2000):
        text = list(CHROME_ANSWER)
        for _ in range(rng.randint(1, 8)):
            text[rng.randrange(len(text))] = rng.choice(" /:0123456789\r\nam=")
        mutated = "".join(text)
        assert red_payload_type(mutated, "0") in (None, 63)
        with_red(mutated)


async def test_aiortc_takes_an_answer_naming_red_as_it_is(aiortc_offer: str) -> None:
    """aiortc negotiates against its own codec list and drops what it does not know: an answer
    with red needs no stripping, and aiortc keeps sending with Opus's payload type."""
    offerer = RTCPeerConnection()
    offerer.addTrack(AudioStreamTrack())
    answerer = RTCPeerConnection()
    try:
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(
            RTCSessionDescription(with_red(offerer.localDescription.sdp), "offer")
        )
        await answerer.setLocalDescription(await answerer.createAnswer())
        answer = answerer.localDescription.sdp
        assert red_payload_type(answer, "0") is None  # aiortc answers without red
        answer = with_red(answer)  # as a browser answers
        assert red_payload_type(answer, "0") == 63
        await offerer.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        assert offerer.signalingState == "stable"
        codecs = SessionDescription.parse(answer).media[0].rtp.codecs
        assert [c.mimeType for c in codecs][:2] == ["audio/opus", "audio/red"]
    finally:
        await offerer.close()
        await answerer.close()


# --- Chromium ----------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
ANSWER_JS = """async (offer) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.ontrack = (e) => {
    const audio = new Audio();
    audio.srcObject = new MediaStream([e.track]);
    audio.play();
  };
  await pc.setRemoteDescription({type: 'offer', sdp: offer});
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
  });
  return pc.localDescription.sdp;
}"""
INBOUND_JS = """async (want) => {
  // Chromium's inbound audio stats once it has received ``want`` packets.
  for (;;) {
    let found = null;
    (await window.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') found = r; });
    if (found && found.packetsReceived >= want) {
      return {received: found.packetsReceived, lost: found.packetsLost,
              concealed: found.concealedSamples, total: found.totalSamplesReceived};
    }
    await new Promise((wake) => setTimeout(wake, 50));
  }
}"""


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"],
        )
        yield browser
        await browser.close()


async def test_chromium_lists_red_among_its_audio_codecs(chromium: Browser) -> None:
    page = await chromium.new_page()
    codecs = await page.evaluate(
        "RTCRtpReceiver.getCapabilities('audio').codecs.map((c) => c.mimeType.toLowerCase())"
    )
    assert "audio/opus" in codecs and "audio/red" in codecs


async def play_to_chromium(
    browser: Browser, use_red: bool, dropped: Callable[[int], bool], packets: int
) -> dict[str, int]:
    """Send ``packets`` Opus packets from aiortc to Chromium, in RED when ``use_red`` and
    Chromium's answer takes it, losing those ``dropped`` says; Chromium's inbound audio stats."""
    page = await browser.new_page()
    pc = RTCPeerConnection()
    pc.addTrack(AudioStreamTrack())
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        answer = await page.evaluate(ANSWER_JS, with_red(offer) if use_red else offer)
        red = red_payload_type(answer, "0")
        assert (red is not None) == use_red
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

        # What a down-track will do, done here on the wire of aiortc's own sender.
        transport = pc.getSenders()[0].transport
        send_rtp: Callable[[bytes], Awaitable[None]] = transport._send_rtp
        encoder = RedEncoder(distance=2)
        opus_line = next(x for x in audio_section(offer) if x.endswith(" opus/48000/2"))
        opus_pt = int(opus_line[9:].split(" ")[0])
        counts = {"sent": 0, "delivered": 0}
        done = asyncio.Event()

        async def lossy_send_rtp(data: bytes) -> None:
            if is_rtcp(data) or done.is_set():
                await send_rtp(data)
                return
            packet = RtpPacket.parse(data)
            if red is not None:
                packet.payload = encoder.encode(packet.payload, packet.timestamp, opus_pt)
                packet.payload_type = red
            counts["sent"] += 1
            if counts["sent"] == packets:
                done.set()
            if not dropped(counts["sent"]):
                counts["delivered"] += 1
                await send_rtp(packet.serialize())

        transport._send_rtp = lossy_send_rtp  # type: ignore[method-assign]
        async with asyncio.timeout(30):
            await done.wait()
        async with asyncio.timeout(15):
            stats: dict[str, int] = await page.evaluate(INBOUND_JS, counts["delivered"])
        return stats
    finally:
        await pc.close()
        await page.close()


async def test_chromium_answers_red_and_plays_it_through_loss(chromium: Browser) -> None:
    """Two packets lost in every ten: Chromium conceals a fifth of the audio without RED, and
    almost none with RED at distance 2 (what it conceals is the start of the stream)."""
    burst = lambda n: n % 10 in (4, 5)  # noqa: E731
    plain = await play_to_chromium(chromium, False, burst, 250)
    red = await play_to_chromium(chromium, True, burst, 250)
    for stats in (plain, red):
        assert stats["lost"] >= 40
        assert stats["total"] >= 200 * 960
    assert plain["concealed"] / plain["total"] > 0.12
    assert red["concealed"] / red["total"] < 0.05
