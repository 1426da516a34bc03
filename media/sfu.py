"""Sfu: the media plane's whole interface, as its owner (the server) sees it.

Two implementations exist: the in-process one (tests, a laptop) and the worker-process proxy
(production), and the server cannot tell them apart. Participants and rooms are opaque strings
chosen by the owner; nothing here knows of boards, users or HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .events import MediaEvent

__all__ = ["IceServer", "Sfu", "EventSink", "MediaError", "RELAY_MAX_BYTES"]

EventSink = Callable[[MediaEvent], None]
# The largest message ``relay`` sends (SCTP carries up to 64 KiB; a view patch is < 1 KiB).
RELAY_MAX_BYTES = 16 * 1024


class MediaError(Exception):
    """A request the media plane refuses (malformed SDP, no usable codec, unknown mid, unknown
    participant); the message names the problem."""


@dataclass(frozen=True)
class IceServer:
    urls: list[str]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class RoomStats:
    participants: int
    up_tracks: int
    down_tracks: int
    packets_forwarded: int
    extra: dict[str, Any] = field(default_factory=dict)


class Sfu(Protocol):
    async def publish(self, room: str, participant: str, offer_sdp: str) -> str:
        """Accept ``participant``'s up connection (their offer); return the server's answer.
        A second publish from the same participant replaces the first (the newest wins)."""

    async def answer_down(self, room: str, participant: str, answer_sdp: str) -> None:
        """The participant's answer to the last ``DownOffer`` sent to them."""

    async def candidate(
        self,
        room: str,
        participant: str,
        direction: Literal["up", "down"],
        candidate: dict[str, Any],
    ) -> None:
        """A trickled ICE candidate from the browser (browser field names: ``candidate``,
        ``sdpMid``, ``sdpMLineIndex``)."""

    async def leave(self, room: str, participant: str) -> None:
        """Close both of the participant's connections; others' down connections renegotiate."""

    async def set_presenter(self, room: str, participant: str | None) -> None:
        """The presenter's video goes to everyone, whatever Last-N says."""

    async def images_first(self, room: str, participant: str, on: bool) -> None:
        """``participant``'s viewer waits for an image (``on``) or no longer: while it does,
        their down link carries the stage's video only, within a share of its estimate, so the
        image has the rest (see ``Room.images_first``). Unknown rooms and participants are
        ignored."""

    async def request_keyframe(self, room: str, participant: str) -> None:
        """Ask ``participant``'s video up-track for a keyframe (rate-limited)."""

    def relay(self, room: str, message: str, skip: str | None = None) -> None:
        """Send the text ``message`` to every participant of ``room`` but ``skip``, over the
        data channel of their down connection: unordered and never sent again, so a loss costs
        that one message rather than holding up the next. For what also travels a reliable path
        but is late if it waits for that path's retransmissions (the shared view). Returns at
        once; a participant whose channel is not open, or is backed up, is skipped, and so is a
        message over ``RELAY_MAX_BYTES``."""

    async def stats(self, room: str) -> RoomStats: ...

    async def close(self) -> None: ...
