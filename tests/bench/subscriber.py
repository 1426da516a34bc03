"""Subscriber: a participant's down connection as the load generator plays it, counting what
arrives without decoding it.

Its receivers are never started (no jitter buffer, no decoder thread, no RTCP loop); its ICE
connection hands each SRTP datagram straight to a counter: one ``unprotect`` and a few byte reads
(SSRC, sequence number, marker bit, VP8 PictureID) per packet. STUN, DTLS and RTCP keep aiortc's
own path. Per SSRC: packets, loss, frames (marker bit), the longest gap between frames; per
subscriber: frame intervals and latencies (from each frame's send time, found by its PictureID).
"""

from __future__ import annotations

import time
from typing import Any, cast

import pylibsrtp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from .publisher import CONFIGURATION

__all__ = ["Subscriber", "TrackStats"]


class TrackStats:
    """What one subscriber received on one SSRC."""

    __slots__ = (
        "kind",
        "packets",
        "lost",
        "seq",
        "frames",
        "last_frame",
        "max_gap",
        "window_packets",
        "window_lost",
        "window_frames",
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.packets = 0
        self.lost = 0
        self.seq = -1
        self.frames = 0
        self.last_frame = 0.0
        self.max_gap = 0.0
        self.window_packets = 0
        self.window_lost = 0
        self.window_frames = 0


class Subscriber:
    """A participant's down connection: answers offers, counts RTP, decodes nothing."""

    def __init__(self, name: str, sent_at: dict[int, float]) -> None:
        self.name = name
        self.pc: RTCPeerConnection | None = None
        self._sent_at = sent_at
        self._kinds: dict[int, str] = {}
        self.tracks: dict[int, TrackStats] = {}
        self.intervals: list[float] = []
        self.latencies: list[float] = []
        self.answers = 0
        self._hooked = False

    async def answer(self, offer_sdp: str) -> str:
        if self.pc is None:
            self.pc = RTCPeerConnection(CONFIGURATION)
            self.pc.on("track", self._on_track)
        self._learn_payload_types(offer_sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        if not self._hooked:
            self._hook()
        self.answers += 1
        return str(self.pc.localDescription.sdp)

    def _learn_payload_types(self, sdp: str) -> None:
        for line in sdp.splitlines():
            if line.startswith("a=rtpmap:"):
                pt, codec = line[9:].split(" ", 1)
                name = codec.split("/", 1)[0].lower()
                self._kinds[int(pt)] = {"vp8": "video", "opus": "audio"}.get(name, "other")

    def _on_track(self, track: MediaStreamTrack) -> None:
        assert self.pc is not None
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                # Never started: no jitter buffer, no decoder thread, no RTCP loop.
                cast(Any, transceiver.receiver).receive = _never_receive

    def _hook(self) -> None:
        assert self.pc is not None
        dtls: Any = self.pc.getTransceivers()[0].receiver.transport
        connection = dtls.transport._connection
        original = connection.data_received
        on_rtp = self._on_rtp

        def data_received(data: bytes, component: int) -> None:
            srtp = dtls._rx_srtp
            if srtp is not None and 127 < data[0] < 192 and not 191 < data[1] < 224:
                try:
                    on_rtp(srtp.unprotect(data))
                except pylibsrtp.Error:
                    pass
            else:  # STUN, DTLS, RTCP: aiortc's own path
                original(data, component)

        connection.data_received = data_received
        self._hooked = True

    def _on_rtp(self, data: bytes) -> None:
        ssrc = (data[8] << 24) | (data[9] << 16) | (data[10] << 8) | data[11]
        track = self.tracks.get(ssrc)
        if track is None:
            track = self.tracks[ssrc] = TrackStats(self._kinds.get(data[1] & 0x7F, "other"))
        track.packets += 1
        seq = (data[2] << 8) | data[3]
        if track.seq >= 0:
            gap = (seq - track.seq) & 0xFFFF
            if gap >= 0x8000 or gap == 0:
                return  # late or duplicate
            track.lost += gap - 1
        track.seq = seq
        if data[1] & 0x80 and track.kind == "video":
            now = time.monotonic()
            if track.frames:
                interval = now - track.last_frame
                self.intervals.append(interval)
                if interval > track.max_gap:
                    track.max_gap = interval
            track.frames += 1
            track.last_frame = now
            i = 12 + 4 * (data[0] & 0x0F)
            if data[0] & 0x10:
                i += 4 + 4 * ((data[i + 2] << 8) | data[i + 3])
            if len(data) > i + 3 and data[i] & 0x80 and data[i + 1] & 0x80:  # X, I
                pid = data[i + 2] & 0x7F
                if data[i + 2] & 0x80:
                    pid = (pid << 8) | data[i + 3]
                sent = self._sent_at.get(pid)
                if sent is not None and now - sent < 5.0:
                    self.latencies.append(now - sent)

    def start_window(self) -> None:
        self.intervals.clear()
        self.latencies.clear()
        for track in self.tracks.values():
            track.window_packets = track.packets
            track.window_lost = track.lost
            track.window_frames = track.frames
            track.max_gap = 0.0

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()


async def _never_receive(*_: Any) -> None:
    return None
