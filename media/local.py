"""LocalSfu: the media plane in the owner's own process and event loop (tests, a laptop)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

from .room import Room
from .sfu import EventSink, IceServer, MediaError, RoomStats

__all__ = ["LocalSfu"]

logger = logging.getLogger(__name__)


class LocalSfu:
    """The in-process ``Sfu``: rooms of aiortc peer connections whose media is forwarded, never
    decoded. ``ice_timeout`` bounds how long a connection may take to come up; past it the
    participant is dropped with ``MediaLeft(reason="timeout")``."""

    def __init__(
        self,
        sink: EventSink,
        ice_servers: list[IceServer] | None = None,
        *,
        ice_timeout: float = 20.0,
        keyframe_interval: float = 0.5,
        last_n: int = 6,
    ) -> None:
        if ice_timeout <= 0:
            raise ValueError(f"ice_timeout must be positive, not {ice_timeout!r}")
        self._sink = sink
        self._configuration = RTCConfiguration(
            # An empty list, not None: aiortc would otherwise fall back to Google's STUN server.
            iceServers=[
                RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
                for s in ice_servers or []
            ],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
        self._ice_timeout = ice_timeout
        self._keyframe_interval = keyframe_interval
        if last_n < 1:
            raise ValueError(f"last_n must be at least 1, not {last_n!r}")
        self._last_n = last_n
        self._presenters: dict[str, str | None] = {}
        self._rooms: dict[str, Room] = {}

    async def publish(self, room: str, participant: str, offer_sdp: str) -> str:
        found = self._rooms.get(room)
        if found is None:
            found = self._rooms[room] = Room(
                room,
                self._configuration,
                self._sink,
                ice_timeout=self._ice_timeout,
                keyframe_interval=self._keyframe_interval,
                last_n=self._last_n,
            )
            found.set_presenter(self._presenters.get(room))
        try:
            return await found.publish(participant, offer_sdp)
        finally:
            self._forget_if_empty(room)

    async def answer_down(self, room: str, participant: str, answer_sdp: str) -> None:
        await self._room(room).answer_down(participant, answer_sdp)

    async def candidate(
        self,
        room: str,
        participant: str,
        direction: Literal["up", "down"],
        candidate: dict[str, Any],
    ) -> None:
        found = self._room(room).participant(participant)
        if direction == "up":
            await found.up.add_candidate(candidate)
        elif direction == "down":
            if found.down is None:
                raise MediaError(f"participant {participant!r} has no down connection")
            await found.down.add_candidate(candidate)
        else:
            raise MediaError(f"candidate direction must be 'up' or 'down', not {direction!r}")

    async def leave(self, room: str, participant: str) -> None:
        """Idempotent: leaving twice, or after a timeout removed the participant, is fine."""
        found = self._rooms.get(room)
        if found is not None:
            await found.leave(participant)
            self._forget_if_empty(room)

    async def set_presenter(self, room: str, participant: str | None) -> None:
        # Remembered for rooms whose media has not started yet.
        self._presenters[room] = participant
        found = self._rooms.get(room)
        if found is not None:
            found.set_presenter(participant)

    async def images_first(self, room: str, participant: str, on: bool) -> None:
        found = self._rooms.get(room)
        if found is not None:
            found.images_first(participant, on)

    async def request_keyframe(self, room: str, participant: str) -> None:
        self._room(room).request_keyframe(participant)

    def relay(self, room: str, message: str, skip: str | None = None) -> None:
        found = self._rooms.get(room)
        if found is not None:
            found.relay(message, skip)

    async def stats(self, room: str) -> RoomStats:
        found = self._rooms.get(room)
        return found.stats() if found is not None else RoomStats(0, 0, 0, 0)

    async def close(self) -> None:
        rooms, self._rooms = list(self._rooms.values()), {}
        for found in rooms:
            await found.close()

    def _room(self, room: str) -> Room:
        found = self._rooms.get(room)
        if found is None:
            raise MediaError(f"unknown room {room!r}")
        return found

    def _forget_if_empty(self, room: str) -> None:
        found = self._rooms.get(room)
        if found is not None and found.empty:
            del self._rooms[room]
            self._presenters.pop(room, None)
