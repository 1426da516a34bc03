"""RED (RFC 2198) in the down connection's session descriptions.

aiortc neither offers nor understands ``red/48000/2``, so we add it to the down offer aiortc
wrote (``with_red``) and read what the participant's answer made of it (``red_payload_type``).
aiortc itself needs no help with such an answer: it matches the answer's codecs against its
own list and drops the ones it does not know, red among them, so the answer goes to
``setRemoteDescription`` unchanged and aiortc keeps sending with Opus's payload type; the
forwarder wraps Opus in RED itself when the answer accepted it.

Red is listed after Opus: the down direction is send-only for us, so the order says nothing
about what we send (we choose), and a participant that does not take red answers with Opus as
before. Receiving RED needs no preference on the browser's side, only red in its answer.
"""

from __future__ import annotations

import re

__all__ = ["RED_CODEC", "with_red", "red_payload_type"]

RED_CODEC = "red/48000/2"
# Chrome's choice first, then the upper dynamic range, then the lower one libwebrtc also
# uses (64-95 would collide with RTCP packet types when RTP and RTCP share a port).
_RED_PTS = (63, *range(127, 95, -1), *range(62, 34, -1))
_ACCEPTED_PTS = frozenset(_RED_PTS)
_RTPMAP = re.compile(r"a=rtpmap:(\d{1,3}) ([^/\s]+)/(\d+)(?:/(\d+))?\s*", re.ASCII)
_FMTP = re.compile(r"a=fmtp:(\d{1,3}) (.*)", re.ASCII)
_MAX_RED_FMTP_BLOCKS = 8


def with_red(offer_sdp: str) -> str:
    """``offer_sdp`` with ``red/48000/2`` over Opus added to each audio section that has Opus
    and no red yet, after Opus in the m= line. Its payload type is 63 (Chrome's) when no
    section uses it, else another one no section uses."""
    sep = "\r\n" if "\r\n" in offer_sdp else "\n"
    lines = offer_sdp.split(sep)
    sections = _sections(lines)
    used = {pt for start, _ in sections for pt in _formats(lines[start])}
    red_for_opus: dict[str, str] = {}  # one red pt per Opus pt, the same in every section
    for start, end in reversed(sections):  # from the end, so inserting keeps earlier indexes
        m_line = lines[start].split(" ")
        if m_line[0] != "m=audio" or len(m_line) < 4 or m_line[1] == "0":
            continue
        codecs = _rtpmaps(lines[start:end], _formats(lines[start]))
        opus = next((pt for pt, names in codecs.items() if names == ["opus/48000/2"]), None)
        if opus is None or any(RED_CODEC in names for names in codecs.values()):
            continue
        if opus not in red_for_opus:
            free = next((str(pt) for pt in _RED_PTS if str(pt) not in used), None)
            if free is None:
                continue
            used.add(free)
            red_for_opus[opus] = free
        red = red_for_opus[opus]
        m_line.insert(m_line.index(opus, 3) + 1, red)
        lines[start] = " ".join(m_line)
        opus_lines = (f"a=rtpmap:{opus}", f"a=fmtp:{opus}", f"a=rtcp-fb:{opus}")
        last_opus = max(
            (i for i in range(start, end) if lines[i].strip().split(" ", 1)[0] in opus_lines),
            default=start,
        )
        lines[last_opus + 1 : last_opus + 1] = [
            f"a=rtpmap:{red} {RED_CODEC}",
            f"a=fmtp:{red} {opus}/{opus}",
        ]
    return sep.join(lines)


def red_payload_type(answer_sdp: str, mid: str) -> int | None:
    """The payload type of the RED the participant's answer accepted in its audio section
    ``mid``, or ``None``: no such section, the section rejected or inactive, no red in it, or
    a red we will not use (a payload type outside 35-63 and 96-127, one named twice, or an fmtp
    that does not build red from this section's Opus). Never raises."""
    if not isinstance(answer_sdp, str) or not isinstance(mid, str):
        return None
    lines = answer_sdp.replace("\r\n", "\n").split("\n")
    for start, end in _sections(lines):
        section = lines[start:end]
        if f"a=mid:{mid}" not in section:
            continue
        m_line = lines[start].split(" ")
        if m_line[0] != "m=audio" or len(m_line) < 4 or m_line[1] == "0":
            return None
        if "a=inactive" in section or "a=sendonly" in section:
            return None  # the participant will not receive on it
        return _accepted_red(section, _formats(lines[start]))
    return None


def _accepted_red(section: list[str], formats: list[str]) -> int | None:
    names = _rtpmaps(section, formats)
    opus = [pt for pt, n in names.items() if n == ["opus/48000/2"]]
    if len(opus) != 1:
        return None
    fmtps: dict[str, list[str]] = {}
    for line in section:
        match = _FMTP.fullmatch(line.strip())
        if match:
            fmtps.setdefault(match[1], []).append(match[2].strip())
    for pt, n in names.items():
        if n != [RED_CODEC] or int(pt) not in _ACCEPTED_PTS or pt != str(int(pt)):
            continue
        fmtp = fmtps.get(pt, [])
        blocks = fmtp[0].split("/") if len(fmtp) == 1 else []  # one fmtp line, or none
        if 1 <= len(blocks) <= _MAX_RED_FMTP_BLOCKS and all(b == opus[0] for b in blocks):
            return int(pt)
    return None


def _sections(lines: list[str]) -> list[tuple[int, int]]:
    """Each m-section's first and past-last line index."""
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if not starts:
        return []
    return list(zip(starts, [*starts[1:], len(lines)], strict=True))


def _formats(m_line: str) -> list[str]:
    return m_line.split(" ")[3:]


def _rtpmaps(section: list[str], formats: list[str]) -> dict[str, list[str]]:
    """The codec names (``opus/48000/2``) each payload type of the m= line is mapped to: one,
    unless the description is confused."""
    codecs: dict[str, list[str]] = {}
    for line in section:
        match = _RTPMAP.fullmatch(line.strip())
        if match and match[1] in formats:
            codecs.setdefault(match[1], []).append(f"{match[2].lower()}/{match[3]}/{match[4] or 1}")
    return codecs
