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


def _sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    """Split ``sdp`` into its session lines and its m-sections' lines."""
    session: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _join(session: list[str], sections: list[list[str]]) -> str:
    return "\r\n".join(session + [line for section in sections for line in section])


def extension_id(sdp: str, uri: str) -> int | None:
    """The id ``sdp`` gives header extension ``uri`` (the first section naming it), if any."""
    for line in sdp.split("\r\n"):
        if line.startswith("a=extmap:"):
            parts = line[9:].split()
            if len(parts) >= 2 and parts[1] == uri:
                number = parts[0].split("/", 1)[0]
                if number.isdigit() and 1 <= int(number) <= 14:
                    return int(number)
    return None


def free_extension_id(sdp: str) -> int:
    """A one-byte header extension id (1–14) that ``sdp`` does not use."""
    used = set()
    for line in sdp.split("\r\n"):
        if line.startswith("a=extmap:"):
            number = line[9:].split(" ", 1)[0].split("/", 1)[0]
            if number.isdigit():
                used.add(int(number))
    return next(i for i in range(14, 0, -1) if i not in used)


def with_transport_cc(sdp: str, ext_id: int, uri: str) -> str:
    """Add transport-wide congestion control to every audio and video section of ``sdp``
    (ours; aiortc knows nothing of it): the header extension ``uri`` as ``ext_id`` and the
    ``transport-cc`` RTCP feedback on Opus and VP8."""
    session, sections = _sections(sdp)
    for section in sections:
        kind = section[0][2:].split(" ", 1)[0]
        if kind not in _WANTED or section[0].split(" ", 2)[1] == "0":
            continue
        pts = [
            line[9:].split(" ", 1)[0]
            for line in section
            if line.startswith("a=rtpmap:")
            and line.split(" ", 1)[1].lower().split("/", 1)[0] in ("opus", "vp8")
        ]
        if not any(line.startswith("a=extmap:") and uri in line for line in section):
            at = max(
                (i for i, line in enumerate(section) if line.startswith("a=extmap:")),
                default=max(i for i, line in enumerate(section) if line[:2] in ("m=", "a=")),
            )
            section.insert(at + 1, f"a=extmap:{ext_id} {uri}")
        for pt in pts:
            feedback = f"a=rtcp-fb:{pt} transport-cc"
            if feedback in section:
                continue
            at = max(
                i
                for i, line in enumerate(section)
                if line.startswith((f"a=rtpmap:{pt} ", f"a=rtcp-fb:{pt} ", f"a=fmtp:{pt} "))
            )
            section.insert(at + 1, feedback)
    return _join(session, sections)
