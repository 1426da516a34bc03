"""Forwarder: moves one up-track's RTP packets to its down-tracks without decoding them.

aiortc has no forwarding mode: its receivers reassemble frames for a decoder thread and its
senders pull frames from an encoder. This module is the ONLY place that reaches into aiortc's
(and aioice's) internals to bypass both; the list is kept by ``tests/media/test_aiortc_contract.py``
and versions are pinned in pyproject.toml:

- ``RTCRtpReceiver.receive`` / ``.stop`` / ``._handle_rtp_packet`` are replaced per instance, so no
  decoder thread, jitter buffer or aiortc RTCP loop ever runs for an up-track (we send the
  receiver reports); ``._handle_rtcp_packet`` is wrapped to see the publisher's sender reports;
  the receiver is registered with its DTLS transport by ``RTCDtlsTransport._register_rtp_receiver``;
- ``RTCRtpReceiver.__rtcp_ssrc`` is the SSRC our PLI/NACK upstream are sent from;
- ``RTCRtpSender.send`` / ``._handle_rtcp_packet`` are wrapped per instance to learn the
  negotiated parameters and to receive the subscriber's PLI/FIR/NACK;
- ``RTCRtpSender._ssrc`` / ``._rtx_ssrc`` / ``._stream_id`` and its sender-report counters
  (``__ntp_timestamp``, ``__rtp_timestamp``, ``__packet_count``, ``__octet_count``);
- ``RTCDtlsTransport._tx_srtp`` (the down peer's SRTP context), ``._send_rtp`` (RTCP upstream),
  ``.transport._connection`` (the aioice Connection) and aioice's ``Connection._nominated`` pair,
  whose ``protocol.send_data`` puts a protected packet on the wire (host or TURN).
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, cast

import pylibsrtp
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

from .sdp import codec_preferences

__all__ = ["Forwarder", "UpTrack", "DownTrack", "Upstream", "vp8_keyframe_start", "RING_SIZE"]

logger = logging.getLogger(__name__)

RING_SIZE = 1024  # a power of two, ≥ 512: more than one 720p keyframe (~200 packets)
_RING_MASK = RING_SIZE - 1
_MAX_NACK_GAP = 64  # a bigger hole upstream is a restart, not loss worth repairing
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

    def send_pli(self) -> None: ...

    def send_nack(self, lost: list[int]) -> None: ...


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


class UpTrack:
    """A publisher's track as received: an aiortc receiver whose RTP goes to a forwarder."""

    def __init__(self, transceiver: RTCRtpTransceiver) -> None:
        self.kind = transceiver.kind
        self._receiver: Any = cast(Any, transceiver.receiver)
        self._deliver: Callable[[RtpPacket], Awaitable[None]] | None = None
        self._registered = False
        self._media_pts: set[int] = set()
        self._rtx_pt = -1
        self._apt = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self.media_ssrc: int | None = None
        self.packets_received = 0
        # Reception statistics for receiver reports (RFC 3550 section 6.4.1).
        self._base_seq = 0
        self._max_seq: int | None = None
        self._cycles = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._lsr = 0
        self._lsr_time = 0.0
        # Replace, per instance, what would start a decoder thread and a jitter buffer.
        self._original_rtcp = self._receiver._handle_rtcp_packet
        self._receiver.receive = self._receive
        self._receiver.stop = self._stop
        self._receiver._handle_rtp_packet = self._handle_rtp_packet
        self._receiver._handle_rtcp_packet = self._handle_rtcp_packet

    def deliver_to(self, deliver: Callable[[RtpPacket], Awaitable[None]]) -> None:
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

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        pt = packet.payload_type
        if pt == self._rtx_pt:
            payload = packet.payload
            if len(payload) < 2:  # a padding-only probe
                return
            # A retransmission the publisher answered to our NACK: forward it unwrapped.
            packet.sequence_number = (payload[0] << 8) | payload[1]
            packet.payload = payload[2:]
            packet.payload_type = self._apt
            if self.media_ssrc is not None:
                packet.ssrc = self.media_ssrc
        elif pt in self._media_pts:
            self.media_ssrc = packet.ssrc
            self._track_sequence(packet.sequence_number)
        else:
            return
        self.packets_received += 1
        if self._deliver is not None:
            await self._deliver(packet)

    def _track_sequence(self, seq: int) -> None:
        last = self._max_seq
        if last is None:
            self._max_seq = self._base_seq = seq
            return
        delta = (seq - last) & 0xFFFF
        if 0 < delta < 0x8000:
            if seq < last:
                self._cycles += 0x10000
            self._max_seq = seq
            if 1 < delta <= _MAX_NACK_GAP and self.kind == "video":
                self.send_nack([(last + i) & 0xFFFF for i in range(1, delta)])

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            self._lsr = (packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
            self._lsr_time = time.monotonic()
        await self._original_rtcp(packet)

    async def _report(self) -> None:
        """Send receiver reports upstream: the publisher's loss-based bandwidth estimate and
        its RTT (for NACK timing) depend on them."""
        while True:
            await asyncio.sleep(0.5 + random.random())
            if self.media_ssrc is None or self._max_seq is None:
                continue
            expected = self._cycles + self._max_seq - self._base_seq + 1
            expected_interval = expected - self._expected_prior
            lost_interval = expected_interval - (self.packets_received - self._received_prior)
            self._expected_prior, self._received_prior = expected, self.packets_received
            fraction = 0
            if expected_interval > 0 and lost_interval > 0:
                fraction = min(255, (lost_interval << 8) // expected_interval)
            dlsr = int((time.monotonic() - self._lsr_time) * 65536) if self._lsr else 0
            report = RtcpReceiverInfo(
                ssrc=self.media_ssrc,
                fraction_lost=fraction,
                packets_lost=max(0, min(expected - self.packets_received, 0x7FFFFF)),
                highest_sequence=(self._cycles + self._max_seq) & 0xFFFFFFFF,
                jitter=0,
                lsr=self._lsr,
                dlsr=dlsr & 0xFFFFFFFF,
            )
            await self._write_rtcp(bytes(RtcpRrPacket(ssrc=self._rtcp_ssrc(), reports=[report])))

    def send_pli(self) -> None:
        if self.media_ssrc is not None:
            self._send_rtcp(
                RtcpPsfbPacket(
                    fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc(), media_ssrc=self.media_ssrc
                )
            )

    def send_nack(self, lost: list[int]) -> None:
        if self.media_ssrc is not None and lost:
            self._send_rtcp(
                RtcpRtpfbPacket(
                    fmt=RTCP_RTPFB_NACK,
                    ssrc=self._rtcp_ssrc(),
                    media_ssrc=self.media_ssrc,
                    lost=sorted(lost),
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


class DownTrack:
    """One down-track: a send-only transceiver of a down peer connection, fed by a forwarder."""

    def __init__(self, transceiver: RTCRtpTransceiver, track: ForwardedTrack) -> None:
        self.kind = transceiver.kind
        self.transceiver = transceiver
        self._track = track
        self._sender: Any = cast(Any, transceiver.sender)
        self._sender_state: dict[str, Any] = self._sender.__dict__
        self._forwarder: Forwarder | None = None
        self._bound = False
        self._srtp: Any = None
        self._ice: Any = None
        self._ssrc = 0
        self._rtx_ssrc = 0
        self._pt = 0
        self._rtx_pt: int | None = None
        self._ext_mid = b""
        self._abs_hdr = b""
        self._level_hdr = b""
        self._initial_seq = random.randrange(0, 32768)
        self._initial_ts = random.randrange(0, 1 << 32)
        self._rtx_seq = random.randrange(0, 32768)
        self.waiting = True  # for its first packet (video: its first keyframe)
        self.ready = False  # negotiated and connected
        self.paused = False  # Last-N: this subscriber does not get this video now
        self._last_seq_out = 0
        self._sent_at_start = 0
        self.seq_offset = 0
        self._ts_offset = 0
        self._first_seq = 0
        self.packets_sent = 0
        self.retransmissions = 0
        self._original_send = self._sender.send
        self._original_rtcp = self._sender._handle_rtcp_packet
        self._sender.send = self._send
        self._sender._handle_rtcp_packet = self._handle_rtcp_packet

    @classmethod
    def create(cls, pc: RTCPeerConnection, kind: str, stream_id: str, track_id: str) -> DownTrack:
        """Add a send-only ``kind`` transceiver to ``pc``, labelled ``stream_id``/``track_id``
        in the offer's msid so the participant can tell whose media it is."""
        track = ForwardedTrack(kind, track_id)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(kind))
        sender: Any = transceiver.sender
        sender._stream_id = stream_id
        return cls(transceiver, track)

    @property
    def mid(self) -> str | None:
        return self.transceiver.mid

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
        dtls = self._sender.transport
        self._srtp = dtls._tx_srtp
        self._ice = dtls.transport._connection
        self._ssrc = self._sender._ssrc
        self._rtx_ssrc = self._sender._rtx_ssrc
        self._bound = True
        if self._forwarder is not None:
            self._forwarder.activate(self)

    def start(self, packet: RtpPacket) -> None:
        """Begin (or, after a pause, resume) this down-track's numbering at ``packet`` (for
        video a keyframe). A resumed track continues its sequence numbers without a gap, so
        the subscriber does not NACK what was deliberately not sent; timestamps keep their
        offset, so the media clock runs on through the pause."""
        self._first_seq = packet.sequence_number
        self._sent_at_start = self.packets_sent
        if self.packets_sent:
            self.seq_offset = (self._last_seq_out + 1 - packet.sequence_number) & 0xFFFF
        else:
            self.seq_offset = (self._initial_seq - packet.sequence_number) & 0xFFFF
            self._ts_offset = (self._initial_ts - packet.timestamp) & 0xFFFFFFFF
        self.waiting = False

    async def send(self, packet: RtpPacket, ntp: int, abs_send_time: bytes) -> None:
        """Rewrite ``packet`` for this down-track, protect it and put it on the wire."""
        up_seq = packet.sequence_number
        if self.packets_sent - self._sent_at_start < 4096 and (up_seq - self._first_seq) & 0x8000:
            return  # late or reordered from before this subscriber started
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        seq = (up_seq + self.seq_offset) & 0xFFFF
        data = self._serialize(packet, self._pt, seq, ts, self._ssrc, packet.payload, abs_send_time)
        self._last_seq_out = seq
        await self._write(data)
        state = self._sender_state
        state[SENDER_NTP] = ntp
        state[SENDER_RTP] = ts
        state[SENDER_PACKETS] += 1
        state[SENDER_OCTETS] += len(packet.payload)
        self.packets_sent += 1

    async def resend(self, packet: RtpPacket, abs_send_time: bytes) -> None:
        """Answer a NACK for ``packet``: as RTX where negotiated, else as it was."""
        seq = (packet.sequence_number + self.seq_offset) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        if self._rtx_pt is None:
            data = self._serialize(
                packet, self._pt, seq, ts, self._ssrc, packet.payload, abs_send_time
            )
        else:
            data = self._serialize(
                packet,
                self._rtx_pt,
                self._rtx_seq,
                ts,
                self._rtx_ssrc,
                _RTX_OSN.pack(seq) + packet.payload,
                abs_send_time,
            )
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        await self._write(data)
        self.retransmissions += 1

    def _serialize(
        self,
        packet: RtpPacket,
        pt: int,
        seq: int,
        ts: int,
        ssrc: int,
        payload: bytes,
        abs_send_time: bytes,
    ) -> bytes:
        ext = self._ext_mid
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
        return header + ext + payload

    async def _write(self, data: bytes) -> None:
        pair = self._ice._nominated.get(1)
        if pair is None:
            return
        try:
            protected = self._srtp.protect(data)
        except pylibsrtp.Error as exc:
            logger.debug("DownTrack(%s) SRTP protect failed: %s", self.mid, exc)
            return
        await pair.protocol.send_data(protected, pair.remote_addr)

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        forwarder = self._forwarder
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            if forwarder is not None and not self.waiting:
                await forwarder.retransmit(self, packet.lost)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            if forwarder is not None:
                forwarder.request_keyframe()
        else:  # receiver reports and REMB: aiortc keeps them for getStats()
            await self._original_rtcp(packet)


class Forwarder:
    """Moves one up-track's media to its down-tracks without decoding it."""

    def __init__(
        self,
        kind: str,
        up: Upstream,
        *,
        keyframe_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self._video = kind == "video"
        self._up = up
        self._clock = clock
        self._keyframe_interval = keyframe_interval
        self._last_keyframe_request = -float("inf")
        self._keyframe_wanted = False
        self._ring: list[RtpPacket | None] = [None] * RING_SIZE
        self._downs: set[DownTrack] = set()
        self._active: tuple[DownTrack, ...] = ()
        self._waiting = 0
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
        self._waiting += 1
        self.request_keyframe()  # a new subscriber cannot decode until the next keyframe

    def pause(self, down: DownTrack) -> None:
        """Stop feeding ``down`` for now (Last-N); it stays negotiated."""
        if down.paused:
            return
        down.paused = True
        if down in self._active:
            self._active = tuple(d for d in self._active if d is not down)
            if down.waiting:
                self._waiting -= 1

    def resume(self, down: DownTrack) -> None:
        """Feed ``down`` again from the next keyframe."""
        if not down.paused:
            return
        down.paused = False
        if down.ready:
            self.activate(down)

    def remove(self, down: DownTrack) -> None:
        self._downs.discard(down)
        if down in self._active:
            self._active = tuple(d for d in self._active if d is not down)
            if down.waiting:
                self._waiting -= 1

    def request_keyframe(self) -> None:
        if not self._video:
            return
        # Many subscribers asking at once must cost the publisher one keyframe, not many.
        self._keyframe_wanted = True
        now = self._clock()
        if now - self._last_keyframe_request >= self._keyframe_interval:
            self._last_keyframe_request = now
            self.keyframe_requests += 1
            self._up.send_pli()

    async def forward(self, packet: RtpPacket) -> None:
        """Send one up-track packet to every active down-track."""
        self._ring[packet.sequence_number & _RING_MASK] = packet
        self.packets_received += 1
        keyframe = False
        if self._video and (self._waiting or self._keyframe_wanted):
            keyframe = vp8_keyframe_start(packet.payload)
            if keyframe:
                self._keyframe_wanted = False
                self.keyframes_seen += 1
            elif self._keyframe_wanted:
                self.request_keyframe()  # repeated, rate-limited, until one arrives
        elif self._level_sink is not None:
            level = packet.extensions.audio_level
            if level is not None:
                self._level_sink(level[1])
        downs = self._active
        if not downs:
            return
        ntp = _ntp_now()
        abs_send_time = ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        for down in downs:
            if down.waiting:
                if self._video and not keyframe:
                    continue
                down.start(packet)
                self._waiting -= 1
            await down.send(packet, ntp, abs_send_time)
            self.packets_forwarded += 1

    async def retransmit(self, down: DownTrack, lost: list[int]) -> None:
        """Answer ``down``'s NACK from the ring; ask the publisher for what it lacks."""
        missing: list[int] = []
        abs_send_time = ((_ntp_now() >> 14) & 0xFFFFFF).to_bytes(3, "big")
        for down_seq in lost:
            up_seq = (down_seq - down.seq_offset) & 0xFFFF
            packet = self._ring[up_seq & _RING_MASK]
            if packet is not None and packet.sequence_number == up_seq:
                await down.resend(packet, abs_send_time)
                self.retransmissions += 1
            else:
                missing.append(up_seq)
        if missing and self._video:
            self._up.send_nack(missing)
