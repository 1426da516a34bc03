"""What the media plane tells its owner: small value objects, one per kind of event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DownOffer",
    "MediaJoined",
    "MediaLeft",
    "MediaReset",
    "ActiveSpeaker",
    "LinkQuality",
    "TRACK_STATES",
    "MAX_QUALITY_TRACKS",
    "MediaEvent",
]

TRACK_STATES = frozenset({"full", "reduced", "paused"})
MAX_QUALITY_TRACKS = 64  # schemas/events/media-quality.json: tracks.maxProperties


@dataclass(frozen=True)
class DownOffer:
    """The server's down connection to ``participant`` needs (re)negotiation: send ``sdp``
    (an offer) to that participant and hand their answer to ``Sfu.answer_down``."""

    room: str
    participant: str
    sdp: str


@dataclass(frozen=True)
class MediaJoined:
    """``participant``'s up connection is connected: their media reaches the server."""

    room: str
    participant: str


@dataclass(frozen=True)
class MediaLeft:
    """``participant``'s media stopped: left, closed, or ICE failed/timed out."""

    room: str
    participant: str
    reason: Literal["left", "closed", "failed", "timeout"]


@dataclass(frozen=True)
class ActiveSpeaker:
    """The debounced loudest participant of ``room`` changed."""

    room: str
    participant: str


@dataclass(frozen=True)
class MediaReset:
    """The media plane lost every connection of ``room`` (its worker process died and was
    started again): each of ``participants`` left, and must publish afresh to come back."""

    room: str
    participants: tuple[str, ...]


@dataclass(frozen=True)
class LinkQuality:
    """What ``participant``'s down link carries by the server's estimate, and how each of its
    down-tracks is forwarded: ``tracks`` pairs a track id as the down offer's msid names it
    (``<stream>-<name>-<generation>``) with ``"full"``, ``"reduced"`` (a smaller layer) or
    ``"paused"`` (no video for now; audio goes on). Pairs, not a dict, so the event stays
    hashable; lists (as JSON brings them back from the media worker) are made tuples.
    Raises ``ValueError`` naming the field for a negative estimate, an unknown state, a
    repeated track or more than ``MAX_QUALITY_TRACKS`` tracks."""

    room: str
    participant: str
    estimate_kbps: int
    tracks: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        tracks = tuple((str(track), str(state)) for track, state in self.tracks)
        object.__setattr__(self, "tracks", tracks)
        if isinstance(self.estimate_kbps, bool) or not isinstance(self.estimate_kbps, int):
            raise ValueError(f"estimate_kbps: {self.estimate_kbps!r} is not a whole number")
        if self.estimate_kbps < 0:
            raise ValueError(f"estimate_kbps: {self.estimate_kbps} is negative")
        if len(tracks) > MAX_QUALITY_TRACKS:
            raise ValueError(f"tracks: {len(tracks)} tracks, at most {MAX_QUALITY_TRACKS}")
        for track, state in tracks:
            if state not in TRACK_STATES:
                raise ValueError(f"tracks.{track}: {state!r} is not one of {sorted(TRACK_STATES)}")
        if len({track for track, _ in tracks}) != len(tracks):
            raise ValueError("tracks: a track is named twice")


MediaEvent = DownOffer | MediaJoined | MediaLeft | MediaReset | ActiveSpeaker | LinkQuality
