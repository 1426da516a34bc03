"""What the media plane tells its owner: small value objects, one per kind of event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DownOffer", "MediaJoined", "MediaLeft", "MediaReset", "ActiveSpeaker", "MediaEvent"]


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


MediaEvent = DownOffer | MediaJoined | MediaLeft | MediaReset | ActiveSpeaker
