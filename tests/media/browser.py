"""A participant's browser, played by aiortc: publishes a small camera and a silent microphone on
an up connection (or, watching only, sections that carry no track), answers the SFU's down offers,
and counts the frames it decodes per track."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCBundlePolicy
from av import VideoFrame

from media.events import DownOffer, MediaEvent
from media.local import LocalSfu

CONFIGURATION = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class SmallCamera(VideoStreamTrack):
    """160×120 at 30 fps: cheap to encode and decode on a 2-core machine."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120)
        for plane in frame.planes:
            plane.update(bytes([pts // 3000 % 256]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class EventLog:
    """The SFU's event sink: keeps every event and hands down offers to their browser."""

    def __init__(self) -> None:
        self.events: list[MediaEvent] = []
        self.browsers: dict[str, BrowserPeer] = {}
        self.sfu: LocalSfu | None = None
        self.changed = asyncio.Event()

    def __call__(self, event: MediaEvent) -> None:
        self.events.append(event)
        self.changed.set()
        if isinstance(event, DownOffer) and event.participant in self.browsers:
            self.browsers[event.participant].offers.put_nowait(event.sdp)

    def of(self, kind: type, participant: str | None = None) -> list[Any]:
        return [
            e
            for e in self.events
            if isinstance(e, kind)
            and (participant is None or getattr(e, "participant", None) == participant)
        ]

    async def wait_for(self, kind: type, participant: str, seconds: float = 15.0) -> Any:
        async with asyncio.timeout(seconds):
            while True:
                found = self.of(kind, participant)
                if found:
                    return found[-1]
                self.changed.clear()
                await self.changed.wait()


class BrowserPeer:
    def __init__(self, log: EventLog, room: str, name: str) -> None:
        assert log.sfu is not None
        self.sfu = log.sfu
        self.room = room
        self.name = name
        self.up = RTCPeerConnection(CONFIGURATION)
        self.down: RTCPeerConnection | None = None
        self.offers: asyncio.Queue[str] = asyncio.Queue()
        self.frames: Counter[str] = Counter()
        self.answers = 0
        self.last_offer = ""
        self.relayed: list[str] = []  # what came on the down connection's data channel
        self.channels: list[RTCDataChannel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._progress = asyncio.Event()
        log.browsers[name] = self
        self._tasks.append(asyncio.ensure_future(self._answer_offers()))

    async def publish(self, *tracks: MediaStreamTrack) -> str:
        """Publish ``tracks`` (a camera and a microphone by default) in this order: the first
        video is the camera, a second one the screen."""
        for track in tracks or (SmallCamera(), AudioStreamTrack()):
            self.up.addTrack(track)
        return await self._offer()

    async def watch(self) -> str:
        """Publish as someone without camera or microphone does: send-only sections that carry
        no track, so that the SFU sets up this browser's down connection."""
        for kind in ("audio", "video"):
            self.up.addTransceiver(kind, direction="sendonly")
        return await self._offer()

    async def _offer(self) -> str:
        await self.up.setLocalDescription(await self.up.createOffer())
        answer = await self.sfu.publish(self.room, self.name, self.up.localDescription.sdp)
        await self.up.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return answer

    async def wait_frames(self, track_ids: list[str], count: int, seconds: float = 20.0) -> None:
        async with asyncio.timeout(seconds):
            while any(self.frames[t] < count for t in track_ids):
                self._progress.clear()
                await self._progress.wait()

    async def wait_answers(self, count: int, seconds: float = 10.0) -> None:
        """Until this browser has answered ``count`` down offers in all."""
        async with asyncio.timeout(seconds):
            while self.answers < count:
                self._progress.clear()
                await self._progress.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.up.close()
        if self.down is not None:
            await self.down.close()

    async def _answer_offers(self) -> None:
        while True:
            offer = await self.offers.get()
            self.last_offer = offer
            if self.down is None:
                self.down = RTCPeerConnection(CONFIGURATION)
                self.down.on("track", self._consume)
                self.down.on("datachannel", self._channel)
            await self.down.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await self.down.setLocalDescription(await self.down.createAnswer())
            await self.sfu.answer_down(self.room, self.name, self.down.localDescription.sdp)
            self.answers += 1
            self._progress.set()

    async def wait_relayed(self, count: int, seconds: float = 10.0) -> None:
        """Until ``count`` messages came on the data channel."""
        async with asyncio.timeout(seconds):
            while len(self.relayed) < count:
                self._progress.clear()
                await self._progress.wait()

    async def wait_channel_open(self, seconds: float = 10.0) -> None:
        """Until the server's data channel is open here."""
        async with asyncio.timeout(seconds):
            while not any(ch.readyState == "open" for ch in self.channels):
                self._progress.clear()
                await self._progress.wait()

    def _channel(self, channel: RTCDataChannel) -> None:
        self.channels.append(channel)
        self._progress.set()

        @channel.on("message")
        def received(message: str | bytes) -> None:
            self.relayed.append(message if isinstance(message, str) else message.decode())
            self._progress.set()

    def _consume(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames[track.id] += 1
                self._progress.set()
        except MediaStreamError:
            pass


def track_id(participant: str, name: str, generation: int = 0) -> str:
    """The msid track id the SFU gives ``participant``'s up-track ``name`` ("audio", "video",
    "screen") of their ``generation``-th publish."""
    return f"{participant}-{name}-{generation}"


__all__ = ["BrowserPeer", "EventLog", "SmallCamera", "track_id"]
