"""TranscodeSfu: the baseline eBoard's SFU is measured against, aiortc's usual relay. Every
up-track is decoded, and ``MediaRelay`` hands the decoded frames to one encoder per subscriber.

It serves the same ``Sfu`` calls as ``media.LocalSfu`` (publish, answer_down, leave, stats,
close) for one or more rooms, and runs in its own process exactly as eBoard's SFU does: through
``media.worker``'s JSON-lines loop (``python -m tests.bench.transcode``), driven from the runner
by ``TranscodeWorkerSfu``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.rtcconfiguration import RTCBundlePolicy

from media.events import DownOffer
from media.sfu import EventSink, IceServer, MediaError, RoomStats
from media.worker import WorkerSfu

__all__ = ["TranscodeSfu", "TranscodeWorkerSfu"]

CONFIGURATION = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


@dataclass(eq=False)
class _Member:
    name: str
    up: RTCPeerConnection
    tracks: list[MediaStreamTrack]
    down: RTCPeerConnection | None = None
    dirty: bool = False
    subscribed: set[MediaStreamTrack] = field(default_factory=set)


class TranscodeSfu:
    """Decode once per up-track, encode once per down-track."""

    def __init__(
        self, sink: EventSink, ice_servers: list[IceServer] | None = None, **_: Any
    ) -> None:
        self._sink = sink
        self._relay = MediaRelay()
        self._rooms: dict[str, dict[str, _Member]] = {}
        self._lock = asyncio.Lock()

    async def publish(self, room: str, participant: str, offer_sdp: str) -> str:
        async with self._lock:
            return await self._publish(room, participant, offer_sdp)

    async def _publish(self, room: str, participant: str, offer_sdp: str) -> str:
        members = self._rooms.setdefault(room, {})
        if participant in members:
            raise MediaError(f"participant {participant!r} already published")
        up = RTCPeerConnection(CONFIGURATION)
        tracks: list[MediaStreamTrack] = []
        up.on("track", tracks.append)
        await up.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await up.setLocalDescription(await up.createAnswer())
        new = _Member(participant, up, tracks)
        for other in members.values():
            self._subscribe(other, new)
            self._subscribe(new, other)
        members[participant] = new
        for member in members.values():
            await self._negotiate(room, member)
        return str(up.localDescription.sdp)

    def _subscribe(self, subscriber: _Member, publisher: _Member) -> None:
        if subscriber.down is None:
            subscriber.down = RTCPeerConnection(CONFIGURATION)
        for track in publisher.tracks:
            if track not in subscriber.subscribed:
                subscriber.subscribed.add(track)
                subscriber.down.addTrack(self._relay.subscribe(track))

    async def _negotiate(self, room: str, member: _Member) -> None:
        down = member.down
        if down is None:
            return
        if down.signalingState != "stable":
            member.dirty = True
            return
        member.dirty = False
        await down.setLocalDescription(await down.createOffer())
        self._sink(DownOffer(room, member.name, str(down.localDescription.sdp)))

    async def answer_down(self, room: str, participant: str, answer_sdp: str) -> None:
        member = self._member(room, participant)
        if member.down is None:
            raise MediaError(f"participant {participant!r} has no down connection")
        await member.down.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        if member.dirty:
            await self._negotiate(room, member)

    async def candidate(
        self, room: str, participant: str, direction: str, candidate: dict[str, Any]
    ) -> None:
        raise MediaError("the transcoding relay takes no trickled candidates")

    async def leave(self, room: str, participant: str) -> None:
        member = self._rooms.get(room, {}).pop(participant, None)
        if member is not None:
            await member.up.close()
            if member.down is not None:
                await member.down.close()

    async def request_keyframe(self, room: str, participant: str) -> None:
        return None  # its encoders make keyframes on their own

    async def images_first(self, room: str, participant: str, on: bool) -> None:
        return None  # one encoding each: nothing to hold back

    async def stats(self, room: str) -> RoomStats:
        members = self._rooms.get(room, {})
        return RoomStats(
            len(members),
            sum(len(m.tracks) for m in members.values()),
            sum(len(m.subscribed) for m in members.values()),
            0,
        )

    async def close(self) -> None:
        for room in list(self._rooms):
            for participant in list(self._rooms[room]):
                await self.leave(room, participant)

    def _member(self, room: str, participant: str) -> _Member:
        member = self._rooms.get(room, {}).get(participant)
        if member is None:
            raise MediaError(f"unknown participant {participant!r} in room {room!r}")
        return member


class TranscodeWorkerSfu(WorkerSfu):
    """``WorkerSfu``'s proxy, with ``TranscodeSfu`` in the worker process."""

    async def _ensure(self) -> asyncio.subprocess.Process:
        # WorkerSfu's own start-up, with this module as the worker.
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.bench.transcode",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=8 * 1024 * 1024,
                )
                self._reader = asyncio.ensure_future(self._read(self._proc))
            return self._proc


if __name__ == "__main__":
    import logging

    import media.local
    from media import worker

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # media.worker's loop serves whatever media.local.LocalSfu names when it starts.
    media.local.LocalSfu = TranscodeSfu  # type: ignore[misc, assignment]
    asyncio.run(worker._serve([], {}))
