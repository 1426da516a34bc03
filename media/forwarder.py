"""Forwarder: moves one up-track's RTP packets to its down-tracks without decoding them.

aiortc has no forwarding mode: its receivers reassemble frames for a decoder thread and its
senders pull frames from an encoder. This module (with ``uplink`` and ``downlink``, which work at
the connection level) is the only place that reaches into aiortc's (and aioice's) internals to
bypass both; the list is kept by ``tests/media/test_aiortc_contract.py`` and versions are pinned
in pyproject.toml:

- ``RTCRtpReceiver.receive`` / ``.stop`` / ``._handle_rtp_packet`` are replaced per instance, so no
  decoder thread, jitter buffer or aiortc RTCP loop ever runs for an up-track (we send the
  receiver reports); ``._handle_rtcp_packet`` is wrapped to see the publisher's sender reports;
  the receiver is registered with its DTLS transport by ``RTCDtlsTransport._register_rtp_receiver``;
- ``RTCRtpReceiver.__rtcp_ssrc`` is the SSRC our PLI/NACK upstream are sent from;
- ``RTCRtpSender.send`` / ``._handle_rtcp_packet`` are wrapped per instance to learn the
  negotiated parameters and to receive the subscriber's PLI/FIR/NACK;
- ``RTCRtpSender._ssrc`` / ``._rtx_ssrc`` / ``._stream_id`` and its sender-report counters
  (``__ntp_timestamp``, ``__rtp_timestamp``, ``__packet_count``, ``__octet_count``);
- ``RTCDtlsTransport._send_rtp`` (RTCP upstream); the down connection's SRTP context and ICE
  pair are used by ``downlink``.

Simulcast: an up-track has a ``Layer`` per encoding the publisher sends; each down-track is fed
one layer at a time through its ``munger.Munger``, switching at the new layer's keyframe, so the
subscriber sees one continuous stream. Which layer, or none (paused), is the room's allocator's
decision; each subscriber's packets then leave through its ``downlink.Downlink``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Protocol, cast

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
)
from av.frame import Frame

from .munger import Munger
from .red import RedEncoder
from .sdp import codec_preferences
from .vp8 import Vp8Descriptor, parse_descriptor

__all__ = [
    "Forwarder",
    "UpTrack",
    "DownTrack",
    "Layer",
    "Link",
    "Upstream",
    "vp8_keyframe_start",
    "HISTORY",
]

logger = logging.getLogger(__name__)

HISTORY = 512  # video packets a down-track keeps for NACKs: ≥ 1 s of its top layer
_MAX_NACK_GAP = 64  # a bigger hole upstream is a restart, not loss worth repairing
_MAX_SSRCS = 8  # SSRCs one up-track may use (3 layers and their RTX, restarts)
_MAX_NACKED = 256  # sequence numbers looked at per NACK packet
_RTX_MAX_AGE = 1.0  # seconds: an older packet is not worth resending, a keyframe is
_RTX_RATE = 200.0  # retransmissions per second per down-track, sustained ...
_PADDING = bytes(254) + b"\xff"  # the most RTP padding one packet can say it carries
_RTX_BURST = 100  # ... and at once: a NACK storm costs its own subscriber's budget only
_NTP_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_HEADER = struct.Struct("!BBHLLHH")  # fixed RTP header + one-byte extension profile/length
_RTX_OSN = struct.Struct("!H")

# Private aiortc attributes, spelled once.
RECEIVER_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
SENDER_NTP = "_RTCRtpSender__ntp_timestamp"
SENDER_RTP = "_RTCRtpSender__rtp_timestamp"
SENDER_PACKETS = "_RTCRtpSender__packet_count"
SENDER_OCTETS = "_RTCRtpSender__octet_count"


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether ``payload`` (a VP8 RTP payload, RFC 7741) starts a keyframe."""
    if not payload:
        return False
    b0 = payload[0]
    if not b0 & 0x10 or b0 & 0x07:  # not the start of partition 0
        return False
    i = 1
    if b0 & 0x80:  # extended control bits
        if len(payload) < 2:
            return False
        b1 = payload[1]
        i = 2
        if b1 & 0x80:  # PictureID, 7 or 15 bits
            if len(payload) <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if b1 & 0x40:  # TL0PICIDX
            i += 1
        if b1 & 0x30:  # TID/KEYIDX
            i += 1
    return len(payload) > i and not payload[i] & 0x01  # P bit clear: a key frame


def _ntp_now() -> int:
    return int((time.time() + _NTP_OFFSET) * 4294967296.0)


class Upstream(Protocol):
    """What a forwarder asks of its publisher."""

    def send_pli(self, layer: int = 0) -> None: ...

    def send_nack(self, lost: list[int], layer: int = 0) -> None: ...


class ForwardedTrack(MediaStreamTrack):
    """Stands in a down sender so aiortc offers it; it never yields a frame, so aiortc's sender
    never reaches its encoder: the forwarder writes the RTP itself."""

    def __init__(self, kind: str, track_id: str) -> None:
        super().__init__()
        self.kind = kind
        self._id = track_id
        self._ended = asyncio.Event()

    async def recv(self) -> Frame:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


class Layer:
    """One encoding of an up-track as it arrives: a simulcast layer (``rid``) or the only one.

    It keeps what the receiver reports upstream need (RFC 3550 section 6.4.1), and the bitrate
    the allocator shares out."""

    def __init__(self, index: int, rid: str | None) -> None:
        self.index = index
        self.rid = rid
        self.ssrc: int | None = None
        self.rtx_ssrc: int | None = None
        self.packets_received = 0
        self.bitrate = 0  # bit/s over the last full second
        self.arrived = -float("inf")  # monotonic time of the newest packet
        self._bits = 0
        self._window_start = 0.0
        self._base_seq = 0
        self._max_seq: int | None = None
        self._cycles = 0
        self._expected_prior = 0
        self._received_prior = 0
        self.lsr = 0
        self.lsr_time = 0.0

    def live_bitrate(self, now: float) -> int:
        """The layer's bitrate, 0 when nothing arrived for a second (a publisher that sends
        fewer layers, or stopped one to save its own uplink)."""
        return self.bitrate if now - self.arrived < 1.0 else 0

    def count(self, size: int, now: float) -> None:
        self.packets_received += 1
        if now - self.arrived >= 1.0:  # first packet, or after a silence: a fresh window
            self._window_start, self._bits = now, 0
        self.arrived = now
        self._bits += size * 8
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            self.bitrate = int(self._bits / elapsed)
            self._window_start, self._bits = now, 0
        elif not self.bitrate and elapsed >= 0.25:  # a first figure without waiting a second
            self.bitrate = int(self._bits / elapsed)

    def track_sequence(self, seq: int) -> list[int]:
        """Account for media packet ``seq``; return the sequence numbers a forward jump skipped
        (worth a NACK when the hole is small)."""
        last = self._max_seq
        if last is None:
            self._max_seq = self._base_seq = seq
            return []
        delta = (seq - last) & 0xFFFF
        if 0 < delta < 0x8000:
            if seq < last:
                self._cycles += 0x10000
            self._max_seq = seq
            if 1 < delta <= _MAX_NACK_GAP:
                return [(last + i) & 0xFFFF for i in range(1, delta)]
        return []

    def report(self, now: float) -> RtcpReceiverInfo | None:
        if self.ssrc is None or self._max_seq is None:
            return None
        expected = self._cycles + self._max_seq - self._base_seq + 1
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (self.packets_received - self._received_prior)
        self._expected_prior, self._received_prior = expected, self.packets_received
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = int((now - self.lsr_time) * 65536) if self.lsr else 0
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=max(0, min(expected - self.packets_received, 0x7FFFFF)),
            highest_sequence=(self._cycles + self._max_seq) & 0xFFFFFFFF,
            jitter=0,
            lsr=self.lsr,
            dlsr=dlsr & 0xFFFFFFFF,
        )


class UpTrack:
    """A publisher's track as received: an aiortc receiver whose RTP goes to a forwarder.

    A simulcast camera arrives as up to three encodings (``rids``, low to high), each on its own
    SSRC and RTX SSRC, told apart by the RID header extensions of their first packets. Without
    rids there is one layer, whatever SSRC it comes on."""

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        rids: tuple[str, ...] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = transceiver.kind
        self._receiver: Any = cast(Any, transceiver.receiver)
        self._clock = clock
        self._deliver: Callable[[RtpPacket, int], Awaitable[None]] | None = None
        self._registered = False
        self._media_pts: set[int] = set()
        self._rtx_pt = -1
        self._apt = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self.rids = rids
        self.layers = [Layer(i, rid) for i, rid in enumerate(rids)] or [Layer(0, None)]
        self._by_rid = {layer.rid: layer for layer in self.layers}
        self._by_ssrc: dict[int, Layer] = {}
        self._by_rtx_ssrc: dict[int, Layer] = {}
        self.packets_received = 0
        # Replace, per instance, what would start a decoder thread and a jitter buffer.
        self._original_rtcp = self._receiver._handle_rtcp_packet
        self._receiver.receive = self._receive
        self._receiver.stop = self._stop
        self._receiver._handle_rtp_packet = self._handle_rtp_packet
        self._receiver._handle_rtcp_packet = self._handle_rtcp_packet

    @property
    def media_ssrc(self) -> int | None:
        """The SSRC of the lowest layer seen so far."""
        return next((layer.ssrc for layer in self.layers if layer.ssrc is not None), None)

    def layer_bitrates(self, now: float) -> tuple[int, ...]:
        return tuple(layer.live_bitrate(now) for layer in self.layers)

    def deliver_to(self, deliver: Callable[[RtpPacket, int], Awaitable[None]]) -> None:
        """Hand every media packet and the index of its layer to ``deliver``."""
        self._deliver = deliver

    async def _receive(self, parameters: RTCRtpReceiveParameters) -> None:
        if self._registered:
            return
        for codec in parameters.codecs:
            pt = codec.payloadType
            if pt is None:
                continue
            if codec.mimeType.lower() == "video/rtx":
                apt = codec.parameters.get("apt")
                if isinstance(apt, int):
                    self._rtx_pt, self._apt = pt, apt
            else:
                self._media_pts.add(pt)
        self._receiver.transport._register_rtp_receiver(self._receiver, parameters)
        self._registered = True
        self._spawn(self._report())

    async def _stop(self) -> None:
        if self._registered:
            self._receiver.transport._unregister_rtp_receiver(self._receiver)
            self._registered = False
        for task in list(self._tasks):
            task.cancel()

    def _media_layer(self, packet: RtpPacket) -> Layer | None:
        return self._layer_of(packet, packet.extensions.rtp_stream_id, self._by_ssrc, "ssrc")

    def _rtx_layer(self, packet: RtpPacket) -> Layer | None:
        rid = packet.extensions.repaired_rtp_stream_id
        return self._layer_of(packet, rid, self._by_rtx_ssrc, "rtx_ssrc")

    def _layer_of(
        self, packet: RtpPacket, rid: str | None, table: dict[int, Layer], attribute: str
    ) -> Layer | None:
        """The layer ``packet`` belongs to, by its SSRC (``table``) or else its ``rid``; a new
        SSRC is remembered in ``table`` and as the layer's ``attribute`` (bounded)."""
        layer = table.get(packet.ssrc)
        if layer is not None:
            return layer
        if not self.rids:
            layer = self.layers[0]  # one encoding: a new SSRC is the publisher restarting it
        else:
            found = self._by_rid.get(rid)
            if found is None:
                return None  # an unannounced rid, or no rid yet on an unknown SSRC
            layer = found
        if len(table) >= _MAX_SSRCS:
            table.clear()
        old = getattr(layer, attribute)
        if old is not None:
            table.pop(old, None)
        setattr(layer, attribute, packet.ssrc)
        table[packet.ssrc] = layer
        return layer

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        pt = packet.payload_type
        if pt == self._rtx_pt:
            layer = self._rtx_layer(packet)
            payload = packet.payload
            if layer is None or layer.ssrc is None or len(payload) < 2:
                return  # unknown, or a padding-only probe
            # A retransmission the publisher answered to our NACK: forward it unwrapped.
            packet.sequence_number = (payload[0] << 8) | payload[1]
            packet.payload = payload[2:]
            packet.payload_type = self._apt
            packet.ssrc = layer.ssrc
        elif pt in self._media_pts:
            layer = self._media_layer(packet)
            if layer is None:
                return
            lost = layer.track_sequence(packet.sequence_number)
            if lost and self.kind == "video":
                self.send_nack(lost, layer.index)
        else:
            return
        self.packets_received += 1
        layer.count(len(packet.payload) + 40, self._clock())
        if self._deliver is not None:
            await self._deliver(packet, layer.index)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            layer = self._by_ssrc.get(packet.ssrc)
            if layer is not None:
                layer.lsr = (packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
                layer.lsr_time = time.monotonic()
        await self._original_rtcp(packet)

    async def _report(self) -> None:
        """Send receiver reports upstream, one block per layer: the publisher's loss-based
        bandwidth estimate and its RTT (for NACK timing) depend on them."""
        while True:
            await asyncio.sleep(0.5 + random.random())
            now = time.monotonic()
            reports = [r for r in (layer.report(now) for layer in self.layers) if r is not None]
            if reports:
                packet = RtcpRrPacket(ssrc=self._rtcp_ssrc(), reports=reports)
                await self._write_rtcp(bytes(packet))

    def send_pli(self, layer: int = 0) -> None:
        ssrc = self.layers[layer].ssrc if layer < len(self.layers) else None
        if ssrc is not None:
            self._send_rtcp(
                RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc(), media_ssrc=ssrc)
            )

    def send_nack(self, lost: list[int], layer: int = 0) -> None:
        ssrc = self.layers[layer].ssrc if layer < len(self.layers) else None
        if ssrc is not None and lost:
            self._send_rtcp(
                RtcpRtpfbPacket(
                    fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc(), media_ssrc=ssrc, lost=sorted(lost)
                )
            )

    def _rtcp_ssrc(self) -> int:
        ssrc = getattr(self._receiver, RECEIVER_RTCP_SSRC)
        return int(ssrc) if ssrc is not None else 0

    def _send_rtcp(self, packet: AnyRtcpPacket) -> None:
        self._spawn(self._write_rtcp(bytes(packet)))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_rtcp(self, data: bytes) -> None:
        try:
            await self._receiver.transport._send_rtp(data)
        except ConnectionError:
            logger.debug("UpTrack(%s) RTCP not sent: not connected", self.kind)


class Link(Protocol):
    """What a down-track sends through: its subscriber's down connection (``downlink.Downlink``),
    which numbers, paces, protects and writes each packet."""

    twcc_id: int | None

    def bind(self, dtls: Any) -> None: ...

    def send(self, data: bytes, kind: str, created: float, stream: Hashable = None) -> None: ...


class _Sent:
    __slots__ = ("seq", "data", "header", "created", "layer")

    def __init__(self, seq: int, data: bytes, header: int, created: float, layer: int) -> None:
        self.seq, self.data, self.header, self.created, self.layer = (
            seq,
            data,
            header,
            created,
            layer,
        )


class DownTrack:
    """One down-track: a send-only transceiver of a down peer connection, fed by a forwarder.

    Video goes through a ``Munger``, so the subscriber sees one continuous stream whichever
    simulcast layer it is sent and however often it was paused; what was sent is kept a little
    while (``HISTORY`` packets) to answer the subscriber's NACKs, as RTX, within its budget."""

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        track: ForwardedTrack,
        link: Link,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = transceiver.kind
        self.transceiver = transceiver
        self._track = track
        self._link = link
        self._clock = clock
        self._sender: Any = cast(Any, transceiver.sender)
        self._sender_state: dict[str, Any] = self._sender.__dict__
        self._forwarder: Forwarder | None = None
        self._bound = False
        self._ssrc = 0
        self._rtx_ssrc = 0
        self._pt = 0
        self._rtx_pt: int | None = None
        self.red_pt: int | None = None  # RFC 2198 audio, where the subscriber took it
        self._red: RedEncoder | None = None
        self._ext_mid = b""
        self._abs_hdr = b""
        self._level_hdr = b""
        self._initial_seq = random.randrange(0, 32768)
        self._initial_ts = random.randrange(0, 1 << 32)
        self._rtx_seq = random.randrange(0, 32768)
        self.munger: Munger | None = Munger() if self.kind == "video" else None
        self.layer = 0  # the layer the allocator wants this subscriber to get
        self.waiting = True  # for its first packet (video: its first keyframe)
        self.ready = False  # negotiated and connected
        self.paused = False  # not forwarded now: Last-N, or no room in the subscriber's budget
        self._last_seq_out = 0
        self._last_ts_out = 0
        self._sent_at_start = 0
        self.seq_offset = 0
        self._ts_offset = 0
        self._first_seq = 0
        self._history: list[_Sent | None] = [None] * HISTORY if self.kind == "video" else []
        self._rtx_tokens = float(_RTX_BURST)
        self._rtx_refill = clock()
        self.packets_sent = 0
        self.retransmissions = 0
        self.retransmissions_refused = 0
        self._original_send = self._sender.send
        self._original_rtcp = self._sender._handle_rtcp_packet
        self._sender.send = self._send
        self._sender._handle_rtcp_packet = self._handle_rtcp_packet

    @classmethod
    def create(
        cls, pc: RTCPeerConnection, kind: str, stream_id: str, track_id: str, link: Link
    ) -> DownTrack:
        """Add a send-only ``kind`` transceiver to ``pc``, labelled ``stream_id``/``track_id``
        in the offer's msid so the participant can tell whose media it is."""
        track = ForwardedTrack(kind, track_id)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(kind))
        sender: Any = transceiver.sender
        sender._stream_id = stream_id
        return cls(transceiver, track, link)

    @property
    def mid(self) -> str | None:
        return self.transceiver.mid

    @property
    def track_id(self) -> str:
        return self._track.id

    def attach(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder
        if self._bound:
            forwarder.activate(self)

    def detach(self) -> None:
        """Stop being fed by the forwarder."""
        if self._forwarder is not None:
            self._forwarder.remove(self)
            self._forwarder = None

    async def close(self) -> None:
        """Stop sending: detach from the forwarder and mark the transceiver inactive (the next
        offer tells the participant the track is gone)."""
        self.detach()
        self.transceiver.direction = "inactive"
        self._track.stop()
        await self._sender.stop()

    def picture_lost(self) -> None:
        """Part of a picture never left (the pacer dropped it): a keyframe of this layer."""
        if self._forwarder is not None:
            self._forwarder.keyframe_for(self)

    def use_red(self, pt: int | None) -> None:
        """Send audio as RFC 2198 RED with payload type ``pt`` (None: plain Opus)."""
        if self.kind == "audio":
            self.red_pt = pt
            # One earlier packet in each (as Chromium sends its own RED): a lost packet is
            # repaired by the next; two would triple the audio of a board that talks a lot.
            self._red = RedEncoder(distance=1) if pt is not None else None

    async def _send(self, parameters: RTCRtpSendParameters) -> None:
        await self._original_send(parameters)
        if self._bound:
            return
        self._pt = parameters.codecs[0].payloadType or 0
        for codec in parameters.codecs:
            if codec.mimeType.lower() == "video/rtx" and codec.parameters.get("apt") == self._pt:
                self._rtx_pt = codec.payloadType
        for ext in parameters.headerExtensions:
            if ext.uri == _MID_URI and parameters.muxId:
                mid = parameters.muxId.encode()
                self._ext_mid = bytes([(ext.id << 4) | (len(mid) - 1)]) + mid
            elif ext.uri == _ABS_SEND_TIME_URI:
                self._abs_hdr = bytes([(ext.id << 4) | 2])
            elif ext.uri == _AUDIO_LEVEL_URI:
                self._level_hdr = bytes([ext.id << 4])
        self._link.bind(self._sender.transport)
        self._ssrc = self._sender._ssrc
        self._rtx_ssrc = self._sender._rtx_ssrc
        self._bound = True
        if self._forwarder is not None:
            self._forwarder.activate(self)

    def start(self, packet: RtpPacket) -> None:
        """Begin (or, after a pause, resume) this audio down-track's numbering at ``packet``. A
        resumed track continues its sequence numbers without a gap, so the subscriber does not
        NACK what was deliberately not sent; timestamps keep their offset, so the media clock
        runs on through the pause."""
        self._first_seq = packet.sequence_number
        self._sent_at_start = self.packets_sent
        if self.packets_sent:
            self.seq_offset = (self._last_seq_out + 1 - packet.sequence_number) & 0xFFFF
        else:
            self.seq_offset = (self._initial_seq - packet.sequence_number) & 0xFFFF
            self._ts_offset = (self._initial_ts - packet.timestamp) & 0xFFFFFFFF
        if self._red is not None:
            self._red.reset()  # nothing from before a pause is worth repeating
        self.waiting = False

    def forward(
        self,
        packet: RtpPacket,
        layer: int,
        keyframe: bool,
        now: float,
        ntp: int,
        ast: bytes,
        descriptor: Vp8Descriptor | None = None,
    ) -> bool:
        """Rewrite ``packet`` (of up layer ``layer``; ``descriptor`` its VP8 descriptor when
        parsed already) for this down-track and send it; return whether it was sent."""
        munger = self.munger
        if munger is None:
            if self.waiting:
                self.start(packet)
            up_seq = packet.sequence_number
            if (
                self.packets_sent - self._sent_at_start < 4096
                and (up_seq - self._first_seq) & 0x8000
            ):
                return False  # late or reordered from before this subscriber started
            ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
            seq = (up_seq + self.seq_offset) & 0xFFFF
            payload = packet.payload
            pt = self._pt
            if self._red is not None and self.red_pt is not None and payload:
                payload = self._red.encode(payload, ts, self._pt)
                pt = self.red_pt
        else:
            out = munger.rewrite(
                layer,
                packet.sequence_number,
                packet.timestamp,
                packet.payload,
                keyframe,
                bool(packet.marker),
                now,
                descriptor,
            )
            if out is None:
                return False
            seq, ts, payload = out
            pt = self._pt
            self.waiting = False
        header, data = self._serialize(packet, pt, seq, ts, self._ssrc, payload, ast)
        self._last_seq_out = seq
        self._last_ts_out = ts
        if munger is not None:
            self._history[seq % HISTORY] = _Sent(seq, data, header, now, layer)
        self._link.send(data, self.kind, now, self)
        state = self._sender_state
        state[SENDER_NTP] = ntp
        state[SENDER_RTP] = ts
        state[SENDER_PACKETS] += 1
        state[SENDER_OCTETS] += len(payload)
        self.packets_sent += 1
        return True

    def resend(self, lost: list[int], now: float) -> tuple[int, bool]:
        """Answer a NACK from what this track sent: as RTX where negotiated, within this
        subscriber's retransmission budget, and only while a packet is young enough to be
        useful. Return how many went out, and whether a keyframe would serve better."""
        if self.munger is None:
            return 0, False
        elapsed = now - self._rtx_refill
        self._rtx_refill = now
        self._rtx_tokens = min(float(_RTX_BURST), self._rtx_tokens + elapsed * _RTX_RATE)
        sent, stale = 0, False
        for seq in lost[:_MAX_NACKED]:
            entry = self._history[seq % HISTORY]
            if entry is None or entry.seq != seq:
                continue
            if now - entry.created > _RTX_MAX_AGE:
                stale = True
                continue
            if self._rtx_tokens < 1:
                self.retransmissions_refused += 1
                continue
            self._rtx_tokens -= 1
            self._link.send(self._as_rtx(entry), "rtx", now, self)
            sent += 1
        self.retransmissions += sent
        return sent, stale

    def padding(self) -> bytes | None:
        """A padding-only packet on this video track's RTX stream, to probe the subscriber's
        link above what the media sends (None where there is no RTX, or nothing sent yet)."""
        if self.munger is None or self._rtx_pt is None or not self.packets_sent:
            return None
        twcc = self._link.twcc_id
        ext = (bytes([(twcc << 4) | 1, 0, 0]) if twcc is not None else b"") + self._ext_mid
        ext += b"\x00" * (-len(ext) & 3)
        header = _HEADER.pack(
            0xB0,
            self._rtx_pt,
            self._rtx_seq,
            self._last_ts_out,
            self._rtx_ssrc,
            0xBEDE,
            len(ext) >> 2,
        )
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        return header + ext + _PADDING

    def _as_rtx(self, entry: _Sent) -> bytes:
        data = entry.data
        if self._rtx_pt is None:
            return data
        head = entry.header
        rtx = bytearray(data[:head])
        rtx[0] &= 0xDF  # the padding, if any, is in the original payload that follows
        rtx[1] = (rtx[1] & 0x80) | self._rtx_pt
        rtx[2:4] = self._rtx_seq.to_bytes(2, "big")
        rtx[8:12] = self._rtx_ssrc.to_bytes(4, "big")
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        return bytes(rtx) + data[2:4] + data[head:]

    def _serialize(
        self,
        packet: RtpPacket,
        pt: int,
        seq: int,
        ts: int,
        ssrc: int,
        payload: bytes,
        abs_send_time: bytes,
    ) -> tuple[int, bytes]:
        twcc = self._link.twcc_id
        ext = (bytes([(twcc << 4) | 1, 0, 0]) if twcc is not None else b"") + self._ext_mid
        if self._abs_hdr:
            ext += self._abs_hdr + abs_send_time
        if self._level_hdr:
            level = packet.extensions.audio_level
            if level is not None:
                ext += self._level_hdr + bytes([(0x80 if level[0] else 0) | (level[1] & 0x7F)])
        pad = -len(ext) & 3
        if pad:
            ext += b"\x00" * pad
        first = 0x90
        if packet.padding_size:
            first = 0xB0
            payload += b"\x00" * (packet.padding_size - 1) + bytes([packet.padding_size])
        header = _HEADER.pack(
            first, (packet.marker << 7) | pt, seq, ts, ssrc, 0xBEDE, len(ext) >> 2
        )
        return 16 + len(ext), header + ext + payload

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        forwarder = self._forwarder
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            if forwarder is not None and not self.waiting:
                forwarder.retransmit(self, packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            if forwarder is not None:
                forwarder.keyframe_for(self)
        else:  # receiver reports and REMB: aiortc keeps them for getStats()
            await self._original_rtcp(packet)


class Forwarder:
    """Moves one up-track's media to its down-tracks without decoding it.

    Each down-track is fed the layer the allocator chose for it (``select``); a switch waits
    for a keyframe of the new layer, asked of the publisher for that layer alone, at most once
    per ``keyframe_interval`` however many subscribers want it."""

    def __init__(
        self,
        kind: str,
        up: Upstream,
        *,
        layers: int = 1,
        keyframe_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self._video = kind == "video"
        self._up = up
        self._clock = clock
        self.layers = max(1, layers)
        self._keyframe_interval = keyframe_interval
        self._last_keyframe_request = [-float("inf")] * self.layers
        self._keyframe_wanted = [False] * self.layers
        self._downs: set[DownTrack] = set()
        self._active: tuple[DownTrack, ...] = ()
        self._level_sink: Callable[[int], None] | None = None
        self.packets_received = 0
        self.packets_forwarded = 0
        self.keyframes_seen = 0
        self.keyframe_requests = 0
        self.retransmissions = 0

    @property
    def down_tracks(self) -> int:
        return len(self._downs)

    def on_audio_level(self, sink: Callable[[int], None]) -> None:
        """Call ``sink`` with each packet's RFC 6464 level (0 loudest … 127 silence)."""
        self._level_sink = sink

    def add(self, down: DownTrack) -> None:
        self._downs.add(down)
        down.attach(self)

    def activate(self, down: DownTrack) -> None:
        """``down`` is negotiated and connected: start feeding it (unless it is paused)."""
        down.ready = True
        if down not in self._downs or down in self._active or down.paused:
            return
        self._active = (*self._active, down)
        down.waiting = True
        if down.munger is not None:
            down.munger.switch_to(down.layer)
            self.request_keyframe(down.layer)  # nothing decodes before the next keyframe

    def select(self, down: DownTrack, layer: int) -> None:
        """Feed ``down`` from ``layer`` from its next keyframe on (and unpause it)."""
        layer = min(max(layer, 0), self.layers - 1)
        switching = layer != down.layer
        down.layer = layer
        if down.paused:
            self.resume(down)
        elif switching and down.munger is not None and down in self._active:
            down.munger.switch_to(layer)
            self.request_keyframe(layer)

    def pause(self, down: DownTrack) -> None:
        """Stop feeding ``down`` for now; it stays negotiated."""
        if down.paused:
            return
        down.paused = True
        if down.munger is not None:
            down.munger.pause()
        self._active = tuple(d for d in self._active if d is not down)

    def resume(self, down: DownTrack) -> None:
        """Feed ``down`` again from the next keyframe."""
        if not down.paused:
            return
        down.paused = False
        if down.ready:
            self.activate(down)

    def remove(self, down: DownTrack) -> None:
        self._downs.discard(down)
        self._active = tuple(d for d in self._active if d is not down)

    def keyframe_for(self, down: DownTrack) -> None:
        """``down``'s subscriber lost the picture (PLI/FIR): a keyframe of its layer alone."""
        self.request_keyframe(down.layer)

    def request_keyframe(self, layer: int | None = None) -> None:
        """Ask the publisher for a keyframe of ``layer`` (None: of every layer someone gets)."""
        if not self._video:
            return
        if layer is None:
            for wanted in sorted({d.layer for d in self._active} or {0}):
                self.request_keyframe(wanted)
            return
        layer = min(max(layer, 0), self.layers - 1)
        # Many subscribers asking at once must cost the publisher one keyframe, not many.
        self._keyframe_wanted[layer] = True
        now = self._clock()
        if now - self._last_keyframe_request[layer] >= self._keyframe_interval:
            self._last_keyframe_request[layer] = now
            self.keyframe_requests += 1
            self._up.send_pli(layer)

    async def forward(self, packet: RtpPacket, layer: int = 0) -> None:
        """Send one up-track packet of ``layer`` to every active down-track that gets it."""
        self.packets_received += 1
        if layer >= self.layers:
            return
        keyframe = False
        if self._video:
            keyframe = vp8_keyframe_start(packet.payload)
            if keyframe:
                self._keyframe_wanted[layer] = False
                self.keyframes_seen += 1
            elif self._keyframe_wanted[layer]:
                self.request_keyframe(layer)  # repeated, rate-limited, until one arrives
        elif self._level_sink is not None:
            level = packet.extensions.audio_level
            if level is not None:
                self._level_sink(level[1])
        downs = self._active
        if not downs:
            return
        now = self._clock()
        ntp = _ntp_now()
        abs_send_time = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        descriptor = None
        if self._video:
            try:  # once here, not once per down-track
                descriptor = parse_descriptor(packet.payload)
            except ValueError:
                pass  # each down-track's munger refuses it
        for down in downs:
            if down.forward(packet, layer, keyframe, now, ntp, abs_send_time, descriptor):
                self.packets_forwarded += 1

    def retransmit(self, down: DownTrack, lost: list[int]) -> None:
        """Answer ``down``'s NACK from what it was sent; past their useful age, a keyframe of
        its layer serves it better than a late packet."""
        sent, stale = down.resend(lost, self._clock())
        self.retransmissions += sent
        if stale:
            self.request_keyframe(down.layer)
