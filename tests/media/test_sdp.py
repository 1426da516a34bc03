"""Bad offers never reach a peer connection: each is a MediaError naming the problem."""

from __future__ import annotations

import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from media.local import LocalSfu
from media.sdp import extension_id, free_extension_id, parse_description, with_transport_cc
from media.sfu import MediaError

from .browser import CONFIGURATION, SmallCamera


async def offer_with(video_codec: str | None = None, audio: bool = True) -> str:
    pc = RTCPeerConnection(CONFIGURATION)
    try:
        if video_codec is not None:
            transceiver = pc.addTransceiver(SmallCamera(), direction="sendonly")
            capabilities = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in capabilities if c.mimeType == video_codec])
        if audio:
            pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


@pytest.mark.parametrize(
    "sdp, problem",
    [
        ("hello", "malformed SDP offer: it must start with 'v=0'"),
        ("", "malformed SDP offer"),
        ("v=0\r\nm=video abc\r\n", "malformed SDP offer"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "has no audio or video section"),
    ],
)
async def test_malformed_offer_is_refused(sfu: LocalSfu, sdp: str, problem: str) -> None:
    with pytest.raises(MediaError, match=problem):
        await sfu.publish("board", "a", sdp)
    assert (await sfu.stats("board")).participants == 0


async def test_offer_with_only_h264_video_has_no_usable_codec(sfu: LocalSfu) -> None:
    offer = await offer_with("video/H264")
    with pytest.raises(
        MediaError,
        match=r"m=video \(mid 0\) has no usable codec: offered "
        r"video/h264.*need video/VP8",
    ):
        await sfu.publish("board", "a", offer)


async def test_offer_without_ice_credentials_is_refused() -> None:
    offer = await offer_with("video/VP8")
    stripped = "".join(
        line for line in offer.splitlines(keepends=True) if not line.startswith("a=ice-pwd")
    )
    with pytest.raises(MediaError, match="lacks a=ice-ufrag / a=ice-pwd"):
        parse_description(stripped, "offer")


async def test_vp8_and_opus_offer_is_accepted_with_nothing_else() -> None:
    offer = await offer_with("video/VP8")
    description = parse_description(offer, "offer")
    assert [m.kind for m in description.media] == ["video", "audio"]


async def test_answer_accepts_vp8_only(sfu: LocalSfu) -> None:
    pc = RTCPeerConnection(CONFIGURATION)
    try:
        pc.addTrack(SmallCamera())  # offers VP8 and H264
        await pc.setLocalDescription(await pc.createOffer())
        answer = await sfu.publish("board", "a", pc.localDescription.sdp)
        video = parse_description(answer, "answer").media[0]
        assert {c.mimeType.lower() for c in video.rtp.codecs} == {"video/vp8", "video/rtx"}
    finally:
        await pc.close()


async def test_answer_asks_the_publisher_for_opus_dtx(sfu: LocalSfu) -> None:
    pc = RTCPeerConnection(CONFIGURATION)
    try:
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        answer = await sfu.publish("board", "a", pc.localDescription.sdp)
        opus_pt = next(
            line.split(":")[1].split()[0]
            for line in answer.splitlines()
            if line.lower().endswith("opus/48000/2")
        )
        fmtp = [line for line in answer.splitlines() if line.startswith(f"a=fmtp:{opus_pt} ")]
        assert len(fmtp) == 1 and fmtp[0].endswith(";usedtx=1")
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))  # still valid
    finally:
        await pc.close()


TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


async def test_transport_cc_is_added_to_every_section_with_one_id() -> None:
    offer = await offer_with("video/VP8")
    ext = free_extension_id(offer)
    assert extension_id(offer, TWCC) is None
    munged = with_transport_cc(offer, ext, TWCC)

    description = parse_description(munged, "offer")  # still an SDP aiortc reads
    for media in description.media:
        assert [e.id for e in media.rtp.headerExtensions if e.uri == TWCC] == [ext]
        codecs = [c for c in media.rtp.codecs if c.mimeType.lower() in ("audio/opus", "video/vp8")]
        assert codecs and all(any(f.type == "transport-cc" for f in c.rtcpFeedback) for c in codecs)
    assert extension_id(munged, TWCC) == ext
    assert with_transport_cc(munged, ext, TWCC) == munged  # once only
    assert munged.endswith("\r\n") and "\r\n\r\n" not in munged


def test_extension_ids_outside_one_byte_headers_are_not_taken() -> None:
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:15 " + TWCC + "\r\n"
    assert extension_id(sdp, TWCC) is None
    assert extension_id(sdp.replace(":15 ", ":x "), TWCC) is None
    used = "".join(f"a=extmap:{i} urn:x:{i}\r\n" for i in range(1, 14))
    assert free_extension_id("v=0\r\nm=audio 9 X 0\r\n" + used) == 14
