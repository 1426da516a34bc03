"""Simulcast in SDP: which layers a publisher's offer sends (RFC 8853 ``a=simulcast``, RFC 8851
``a=rid``), and the lines our answer needs to receive them.

aiortc knows nothing of simulcast: it ignores these lines in an offer and leaves them out of its
answer, and a browser that finds no ``a=simulcast:recv`` in the answer sends one encoding only.
So the offer is read here, checked against the layers we accept, and the answer is given its
``a=rid`` / ``a=simulcast`` lines and the RID header extensions, with the ids the offer chose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sfu import MediaError

__all__ = [
    "ACCEPTED_RIDS",
    "RID_URI",
    "REPAIRED_RID_URI",
    "layer_of",
    "offered_rids",
    "rid_extension_ids",
    "with_simulcast_answer",
]

ACCEPTED_RIDS = ("q", "h", "f")  # low → high: a rid's layer is its index here
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"


def _shown(value: str) -> str:
    """A value from the offer, quoted and cut short for an error message."""
    return repr(value[:32])


@dataclass
class _Section:
    """One m-section of a description: its kind, mid and attribute lines."""

    kind: str
    mid: str | None = None
    rids: list[tuple[str, str]] = field(default_factory=list)  # (id, direction)
    simulcast: list[str] = field(default_factory=list)  # each a=simulcast value
    extmaps: dict[str, int] = field(default_factory=dict)  # uri → id


def _sections(sdp: str) -> list[_Section]:
    sections: list[_Section] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append(_Section(kind=line[2:].split(" ", 1)[0]))
        elif not sections:
            continue
        elif line.startswith("a=mid:"):
            sections[-1].mid = line[6:].strip()
        elif line.startswith("a=rid:"):
            rid, _, rest = line[6:].partition(" ")
            sections[-1].rids.append((rid, rest.split(" ", 1)[0]))
        elif line.startswith("a=simulcast:"):
            sections[-1].simulcast.append(line[12:].strip())
        elif line.startswith("a=extmap:"):
            number, _, rest = line[9:].partition(" ")
            uri = rest.split(" ", 1)[0]
            try:
                ext_id = int(number.split("/", 1)[0])
            except ValueError:
                raise MediaError(f"malformed a=extmap id {_shown(number)}") from None
            if not 1 <= ext_id <= 255:
                raise MediaError(f"a=extmap id {ext_id} out of range 1…255")
            sections[-1].extmaps[uri] = ext_id
    return sections


def _send_rids(section: _Section) -> tuple[str, list[str]]:
    """``section``'s mid and the rids its a=simulcast sends, checked; of alternatives the
    first."""
    if section.mid is None:
        raise MediaError(f"m={section.kind} with a=simulcast has no a=mid")
    where = f"m={section.kind} (mid {_shown(section.mid)})"
    if len(section.simulcast) > 1:
        raise MediaError(f"{where} has {len(section.simulcast)} a=simulcast lines; one at most")
    if section.kind != "video":
        raise MediaError(f"{where} offers simulcast; only video may")
    declared: set[str] = set()
    for rid, direction in section.rids:
        if direction != "send":
            raise MediaError(f"{where} a=rid:{_shown(rid)} is {_shown(direction)}; we only receive")
        if rid not in ACCEPTED_RIDS:
            raise MediaError(
                f"{where} unknown rid {_shown(rid)}; accepted: {', '.join(ACCEPTED_RIDS)}"
            )
        if rid in declared:
            raise MediaError(f"{where} declares rid {_shown(rid)} twice")
        declared.add(rid)
    tokens = section.simulcast[0].split()
    if len(tokens) != 2 or tokens[0] != "send":
        raise MediaError(
            f"{where} a=simulcast:{_shown(section.simulcast[0])} must be 'send' and one list"
        )
    streams = tokens[1].removeprefix("rid=").split(";")
    if len(streams) > len(ACCEPTED_RIDS):
        raise MediaError(
            f"{where} offers {len(streams)} simulcast streams; at most {len(ACCEPTED_RIDS)}"
            f" ({', '.join(ACCEPTED_RIDS)})"
        )
    chosen: list[str] = []
    named: set[str] = set()
    for stream in streams:
        alternatives = [rid.removeprefix("~") for rid in stream.split(",")]
        for rid in alternatives:
            if rid not in declared:
                raise MediaError(f"{where} a=simulcast names rid {_shown(rid)} without an a=rid")
            if rid in named:
                raise MediaError(f"{where} a=simulcast names rid {_shown(rid)} twice")
            named.add(rid)
        chosen.append(alternatives[0])
    if RID_URI not in section.extmaps:
        raise MediaError(f"{where} offers simulcast without the extension {RID_URI}")
    return section.mid, chosen


def offered_rids(offer_sdp: str) -> dict[str, list[str]]:
    """The rids each simulcast video section of ``offer_sdp`` sends, by mid, in the offer's
    order (paused ``~`` rids included, unpaused; of ``,`` alternatives the first). Sections
    without ``a=simulcast`` are absent. Raise ``MediaError`` naming what we do not accept:
    rids other than ``ACCEPTED_RIDS``, one twice, one without ``a=rid``, more than three, any
    ``recv`` direction, no RID header extension."""
    offered: dict[str, list[str]] = {}
    for section in _sections(offer_sdp):
        if section.simulcast:
            mid, rids = _send_rids(section)
            offered[mid] = rids
    return offered


def layer_of(rid: str) -> int:
    """The layer index of an accepted ``rid`` (0 is the lowest)."""
    if rid not in ACCEPTED_RIDS:
        raise MediaError(f"unknown rid {_shown(rid)}; accepted: {', '.join(ACCEPTED_RIDS)}")
    return ACCEPTED_RIDS.index(rid)


def rid_extension_ids(offer_sdp: str, mid: str) -> tuple[int, int | None]:
    """The header extension ids ``offer_sdp`` gave the RID and the repaired RID (``None``: not
    offered) in section ``mid``."""
    for section in _sections(offer_sdp):
        if section.mid == mid:
            if RID_URI not in section.extmaps:
                raise MediaError(f"mid {_shown(mid)} has no {RID_URI} extension")
            return section.extmaps[RID_URI], section.extmaps.get(REPAIRED_RID_URI)
    raise MediaError(f"offer has no section with mid {_shown(mid)}")


def with_simulcast_answer(
    answer_sdp: str, rids_by_mid: dict[str, list[str]], *, offer_sdp: str
) -> str:
    """``answer_sdp`` with, in each section of ``rids_by_mid``, the lines to receive those rids:
    the RID (and repaired RID) extensions with ``offer_sdp``'s ids, ``a=rid:<rid> recv`` and
    ``a=simulcast:recv``."""
    eol = "\r\n" if "\r\n" in answer_sdp else "\n"
    lines = answer_sdp.split(eol)
    present = {s.mid: set(s.extmaps) for s in _sections(answer_sdp)}
    out: list[str] = []
    pending: list[str] = []  # the simulcast lines for the section being copied
    done: set[str] = set()
    for line in lines:
        if line.startswith("m=") or (line == "" and pending):
            out += pending
            pending = []
        out.append(line)
        if line.startswith("a=mid:"):
            mid = line[6:].strip()
            if mid in rids_by_mid:
                rid_id, repaired_id = rid_extension_ids(offer_sdp, mid)
                pending = [
                    f"a=extmap:{ext_id} {uri}"
                    for ext_id, uri in ((rid_id, RID_URI), (repaired_id, REPAIRED_RID_URI))
                    if ext_id is not None and uri not in present[mid]
                ]
                pending += _rid_lines(rids_by_mid[mid])
                done.add(mid)
    out += pending
    missing = set(rids_by_mid) - done
    if missing:
        raise MediaError(f"answer has no section with mid {_shown(sorted(missing)[0])}")
    return eol.join(out)


def _rid_lines(rids: list[str]) -> list[str]:
    if not 1 <= len(rids) <= len(ACCEPTED_RIDS) or len(set(rids)) != len(rids):
        raise MediaError(f"cannot answer simulcast rids {rids!r:.60}")
    for rid in rids:
        layer_of(rid)
    return [f"a=rid:{rid} recv" for rid in rids] + [f"a=simulcast:recv {';'.join(rids)}"]
