"""Session descriptions as the media plane accepts them: Opus audio, VP8 video, nothing else.

Everything the browser sends is checked here before it reaches an RTCPeerConnection, so a bad
offer, answer or candidate becomes a ``MediaError`` that names the problem instead of an aiortc
exception from deep inside a negotiation.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCIceCandidate, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription, candidate_from_sdp

from .sfu import MediaError

__all__ = [
    "AUDIO_CODEC",
    "VIDEO_CODEC",
    "codec_preferences",
    "parse_description",
    "parse_candidate",
    "with_opus_dtx",
]

AUDIO_CODEC = "audio/opus"
VIDEO_CODEC = "video/VP8"
_WANTED = {"audio": AUDIO_CODEC.lower(), "video": VIDEO_CODEC.lower()}
# aiortc's parser signals bad input with whatever its code happens to trip over.
_PARSE_ERRORS = (AssertionError, ValueError, KeyError, IndexError, TypeError, AttributeError)


def codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    """The codecs we negotiate for ``kind``: Opus, or VP8 with its RTX."""
    wanted = _WANTED[kind]
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    assert capabilities is not None
    return [
        codec for codec in capabilities.codecs if codec.mimeType.lower() in (wanted, "video/rtx")
    ]


def parse_description(sdp: str, kind: str) -> SessionDescription:
    """Parse and check an offer or answer (``kind``) from a participant; raise ``MediaError``
    naming the first problem: not SDP, no media, missing ICE/DTLS parameters, no usable codec."""
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
        raise MediaError(f"malformed SDP {kind}: it must start with 'v=0'")
    try:
        description = SessionDescription.parse(sdp)
    except _PARSE_ERRORS as exc:
        raise MediaError(f"malformed SDP {kind}: {exc or type(exc).__name__}") from exc
    media = [m for m in description.media if m.kind in _WANTED]
    if not media:
        raise MediaError(f"SDP {kind} has no audio or video section")
    for m in media:
        where = f"SDP {kind} m={m.kind} (mid {m.rtp.muxId})"
        if m.rtp.muxId is None:
            raise MediaError(f"SDP {kind} m={m.kind} has no a=mid")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise MediaError(f"{where} lacks a=ice-ufrag / a=ice-pwd")
        if m.dtls is None or not m.dtls.fingerprints:
            raise MediaError(f"{where} lacks a=fingerprint")
        if not m.rtcp_mux:
            raise MediaError(f"{where} lacks a=rtcp-mux")
        if m.direction == "inactive" or m.port == 0:
            continue
        offered = {c.mimeType.lower() for c in m.rtp.codecs}
        if _WANTED[m.kind] not in offered:
            names = ", ".join(sorted(offered)) or "none"
            raise MediaError(
                f"{where} has no usable codec: offered {names}, need "
                f"{AUDIO_CODEC if m.kind == 'audio' else VIDEO_CODEC}"
            )
    return description


def parse_candidate(candidate: dict[str, Any]) -> RTCIceCandidate | None:
    """A browser ``RTCIceCandidateInit`` as aiortc wants it; ``None`` means end of candidates."""
    line = candidate.get("candidate")
    if not isinstance(line, str):
        raise MediaError("ICE candidate lacks the 'candidate' string")
    mid = candidate.get("sdpMid")
    index = candidate.get("sdpMLineIndex")
    if mid is not None and not isinstance(mid, str):
        raise MediaError("ICE candidate 'sdpMid' must be a string")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise MediaError("ICE candidate 'sdpMLineIndex' must be an integer")
    if mid is None and index is None:
        raise MediaError("ICE candidate needs 'sdpMid' or 'sdpMLineIndex'")
    if not line.strip():
        return None
    try:
        parsed = candidate_from_sdp(line.removeprefix("candidate:"))
    except _PARSE_ERRORS as exc:
        raise MediaError(f"malformed ICE candidate {line[:80]!r}") from exc
    parsed.sdpMid = mid
    parsed.sdpMLineIndex = index
    return parsed


def with_opus_dtx(answer_sdp: str) -> str:
    """Ask the publisher for Opus DTX (RFC 7587 ``usedtx=1``) in our answer: a participant who
    is silent then sends almost nothing, and the SFU forwards almost nothing for them. In-band
    FEC is asked for too; both only change what the publisher sends, which we forward as is."""
    lines = answer_sdp.split("\r\n")
    opus = [
        line.split(":", 1)[1].split(" ", 1)[0]
        for line in lines
        if line.startswith("a=rtpmap:") and line.lower().endswith(" opus/48000/2")
    ]
    out: list[str] = []
    for line in lines:
        pt = line[7:].split(" ", 1)[0] if line.startswith("a=fmtp:") else None
        if pt in opus:
            if "usedtx=" not in line:
                line += ";usedtx=1"
            opus.remove(pt)
        out.append(line)
    for pt in opus:  # no fmtp line yet: add one after the rtpmap
        at = out.index(next(x for x in out if x.startswith(f"a=rtpmap:{pt} ")))
        out.insert(at + 1, f"a=fmtp:{pt} minptime=10;useinbandfec=1;usedtx=1")
    return "\r\n".join(out)
