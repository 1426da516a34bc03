"""Peers: a participant's up connection (answered by the server) and down connection (offered by
the server), over aiortc's public RTCPeerConnection API. Their tracks are ``UpTrack`` and
``DownTrack`` from the forwarder module, which alone touches aiortc's internals."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from .downlink import Downlink
from .forwarder import DownTrack, Forwarder, UpTrack
from .redsdp import red_payload_type, with_red
from .sdp import (
    codec_preferences,
    extension_id,
    free_extension_id,
    parse_candidate,
    parse_description,
    with_opus_dtx,
    with_transport_cc,
)
from .sfu import MediaError
from .simulcast import offered_rids, rid_extension_ids, with_simulcast_answer
from .twcc import TWCC_URI
from .uplink import REPAIRED_RID_URI, RID_URI, Uplink

__all__ = ["Peer", "UpPeer", "DownPeer", "UP_TRACKS", "RELAY_LABEL", "up_track_names"]

logger = logging.getLogger(__name__)

StateCallback = Callable[[str], None]
# What an up connection's m-sections carry, in the offer's order per kind: the first audio is
# the microphone, the first video the camera, a second video the presenter's screen.
UP_TRACKS: dict[str, tuple[str, ...]] = {"audio": ("audio",), "video": ("video", "screen")}
RELAY_LABEL = "eboard"  # the down connection's data channel
# Bytes queued on the data channel past which a relayed message is dropped: a subscriber whose
# association stalls must not make the server hold messages for it.
RELAY_BACKLOG_BYTES = 64 * 1024
# What aiortc raises when a description does not fit the negotiation.
_NEGOTIATION_ERRORS = (
    ValueError,
    OperationError,
    InvalidStateError,
    InvalidAccessError,
    InternalError,
    AssertionError,
    KeyError,
    IndexError,
    AttributeError,
)


class Peer:
    """One RTCPeerConnection, its state reported through ``on_state`` until it is closed."""

    direction = "peer"

    def __init__(self, configuration: RTCConfiguration, on_state: StateCallback) -> None:
        self.pc = RTCPeerConnection(configuration)
        self.connected = asyncio.Event()
        self._on_state = on_state
        self._closed = False
        self._watchdog: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._state_changed)

    @property
    def closed(self) -> bool:
        return self._closed

    def watch(self, seconds: float, on_timeout: Callable[[], None]) -> None:
        """Call ``on_timeout`` unless the connection is up within ``seconds``."""
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch(seconds, on_timeout))

    async def add_candidate(self, candidate: dict[str, Any]) -> None:
        parsed = parse_candidate(candidate)
        transceivers = self.pc.getTransceivers()
        mids = {t.mid for t in transceivers if t.mid is not None}
        sections = len(transceivers)
        if self.pc.sctp is not None:  # the data channel's section (down connections)
            sections += 1
            if self.pc.sctp.mid is not None:
                mids.add(self.pc.sctp.mid)
        mid = candidate.get("sdpMid")
        if mid is not None:
            if mid not in mids:
                raise MediaError(
                    f"ICE candidate for unknown mid {mid!r} on the {self.direction} connection"
                )
        elif candidate.get("sdpMLineIndex") not in range(sections):
            raise MediaError(
                f"ICE candidate for unknown m-line {candidate.get('sdpMLineIndex')!r}"
                f" on the {self.direction} connection"
            )
        if parsed is not None and transceivers and transceivers[0].mid is not None:
            # Everything is bundled on the first transport: aiortc ignores candidates that
            # name any other mid.
            parsed.sdpMid = transceivers[0].mid
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self.pc.close()

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        if not self._closed:
            self._on_state(state)

    async def _watch(self, seconds: float, on_timeout: Callable[[], None]) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self.connected.wait()
        except TimeoutError:
            if not self._closed:
                on_timeout()


def up_track_names(kinds: list[str]) -> list[str]:
    """Name an up connection's audio and video m-sections (their ``kinds``, in the offer's
    order) after what they carry; raise ``MediaError`` for more sections than ``UP_TRACKS``."""
    names: list[str] = []
    seen: Counter[str] = Counter()
    for kind in kinds:
        allowed = UP_TRACKS[kind]
        if seen[kind] == len(allowed):
            raise MediaError(
                f"offer has {kinds.count(kind)} {kind} sections; an up connection carries at"
                f" most {len(allowed)} ({', '.join(allowed)})"
            )
        names.append(allowed[seen[kind]])
        seen[kind] += 1
    return names


class UpPeer(Peer):
    """A participant's up connection: they offer their microphone, camera and, when presenting,
    screen; we answer with Opus and VP8 only, and every received track feeds a forwarder
    instead of a decoder. A section may carry no track (someone without a camera, or who denied
    it, still publishes so that they get a down connection): its track never sends."""

    direction = "up"

    def __init__(self, configuration: RTCConfiguration, on_state: StateCallback) -> None:
        super().__init__(configuration, on_state)
        self.tracks: dict[str, UpTrack] = {}  # by name: "audio", "video", "screen"
        self.link: Uplink | None = None

    async def accept(self, offer_sdp: str) -> str:
        """Apply the participant's offer; return our answer (with our candidates)."""
        description = parse_description(offer_sdp, "offer")
        simulcast = offered_rids(offer_sdp)  # checked: a bad rid refuses the offer
        sections = [m for m in description.media if m.kind in UP_TRACKS]
        names = up_track_names([m.kind for m in sections])
        # Our own receive-only transceivers, in the offer's order, so aiortc answers each
        # section with our codecs instead of everything it could decode. Only the camera is
        # received as simulcast: a screen keeps one encoding, at full resolution.
        accepted: dict[str, list[str]] = {}
        for m, name in zip(sections, names, strict=True):
            transceiver = self.pc.addTransceiver(m.kind, direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(m.kind))
            rids: tuple[str, ...] = ()
            mid = m.rtp.muxId
            if name == "video" and mid is not None and len(simulcast.get(mid, ())) > 1:
                rids = tuple(simulcast[mid])
                accepted[mid] = list(rids)
            self.tracks[name] = UpTrack(transceiver, rids)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except _NEGOTIATION_ERRORS as exc:
            raise MediaError(f"offer refused: {exc or type(exc).__name__}") from exc
        answer = with_opus_dtx(str(self.pc.localDescription.sdp))
        extensions: dict[str, int] = {}
        twcc = extension_id(offer_sdp, TWCC_URI)
        if twcc is not None:
            answer = with_transport_cc(answer, twcc, TWCC_URI)
            extensions[TWCC_URI] = twcc
        if accepted:
            answer = with_simulcast_answer(answer, accepted, offer_sdp=offer_sdp)
            rid_id, repaired_id = rid_extension_ids(offer_sdp, next(iter(accepted)))
            if rid_id is not None:
                extensions[RID_URI] = rid_id
            if repaired_id is not None:
                extensions[REPAIRED_RID_URI] = repaired_id
        transceivers = self.pc.getTransceivers()
        if transceivers:
            self.link = Uplink(extensions)
            self.link.install(transceivers[0].receiver.transport)
        return answer

    async def close(self) -> None:
        if self.link is not None:
            self.link.close()
        await super().close()


def _picture_lost(stream: object) -> None:
    if isinstance(stream, DownTrack):
        stream.picture_lost()


class DownPeer(Peer):
    """A participant's down connection: we offer everyone else's tracks and renegotiate as
    they come and go; one offer is outstanding at a time, later changes wait for its answer.

    It also carries one data channel, ``eboard``, that the server opens (unordered, never
    retransmitted) for ``relay``: a message lost on a lossy link is lost, where on the socket
    it would wait for TCP's retransmission and hold up every later one. Channels the browser
    opens are closed at once; the server reads nothing from the channel."""

    direction = "down"

    def __init__(
        self,
        configuration: RTCConfiguration,
        on_state: StateCallback,
        on_offer: Callable[[str], None],
    ) -> None:
        super().__init__(configuration, on_state)
        self._on_offer = on_offer
        self._lock = asyncio.Lock()
        self._dirty = False
        self.tracks: dict[Forwarder, DownTrack] = {}
        self.link = Downlink()
        self.link.on_video_dropped = _picture_lost
        self.link.padder = self._padding
        self._twcc_id: int | None = None
        self.channel: RTCDataChannel | None = None  # created with the first offer
        self.relayed = 0
        self.pc.on("datachannel", lambda channel: channel.close())

    def relay(self, message: str) -> bool:
        """Send ``message`` (the room bounds its size) on the data channel if it is open and
        not backed up; whether it was sent."""
        channel = self.channel
        if (
            channel is None
            or channel.readyState != "open"
            or channel.bufferedAmount > RELAY_BACKLOG_BYTES
        ):
            return False
        channel.send(message)
        self.relayed += 1
        return True

    def add(self, forwarder: Forwarder, stream_id: str, track_id: str) -> DownTrack:
        """Subscribe to ``forwarder``; takes effect with the next negotiation."""
        down = DownTrack.create(self.pc, forwarder.kind, stream_id, track_id, self.link)
        self.tracks[forwarder] = down
        forwarder.add(down)
        return down

    def _padding(self) -> bytes | None:
        # Any video track that has sent will do, paused or not: when every video is paused for
        # bandwidth, probing is the only way to find the room to resume one.
        for down in self.tracks.values():
            if down.kind == "video":
                packet = down.padding()
                if packet is not None:
                    return packet
        return None

    async def remove(self, forwarder: Forwarder) -> None:
        down = self.tracks.pop(forwarder, None)
        if down is not None:
            await down.close()

    async def negotiate(self) -> None:
        """Send a new offer now, or as soon as the outstanding one is answered."""
        async with self._lock:
            if self._closed:
                return
            if self.pc.signalingState != "stable":
                self._dirty = True
                return
            self._dirty = False
            if self.channel is None and self.pc.getTransceivers():
                # After the first transceiver, not before: aiortc (1.16) bundling a data channel
                # made first stops the very transport everything else shares.
                self.channel = self.pc.createDataChannel(
                    RELAY_LABEL, ordered=False, maxRetransmits=0
                )
            await self.pc.setLocalDescription(await self.pc.createOffer())
            sdp = str(self.pc.localDescription.sdp)
            # What aiortc cannot negotiate, offered in the SDP the subscriber sees: transport
            # -wide congestion control (the same id in every section, as BUNDLE requires) and
            # Opus RED. Their answers are read back in accept_answer.
            if self._twcc_id is None:
                self._twcc_id = free_extension_id(sdp)
            sdp = with_red(with_transport_cc(sdp, self._twcc_id, TWCC_URI))
        self._on_offer(sdp)

    async def accept_answer(self, answer_sdp: str) -> None:
        async with self._lock:
            if self._closed or self.pc.signalingState != "have-local-offer":
                raise MediaError("no down offer is waiting for an answer")
            parse_description(answer_sdp, "answer")
            try:
                # aiortc drops the codecs it does not know (red) from the answer itself.
                await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
            except _NEGOTIATION_ERRORS as exc:
                raise MediaError(f"down answer refused: {exc or type(exc).__name__}") from exc
            twcc = extension_id(answer_sdp, TWCC_URI)
            self.link.use_transport_cc(twcc if twcc == self._twcc_id else None)
            for down in self.tracks.values():
                if down.kind == "audio" and down.mid is not None:
                    down.use_red(red_payload_type(answer_sdp, down.mid))
        if self._dirty:
            await self.negotiate()

    async def close(self) -> None:
        for down in self.tracks.values():
            down.detach()
        self.tracks.clear()
        self.link.close()
        await super().close()
