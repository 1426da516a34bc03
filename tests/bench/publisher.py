"""Publisher: a participant's camera and microphone as the load generator plays them, the
pre-encoded clip written as RTP on an up connection without any encoder.

The up connection's senders carry a track that never yields a frame, so aiortc negotiates them
but never encodes; once a sender is negotiated its SRTP context and nominated ICE pair are taken
(as media/forwarder.py does for its down-tracks) and each packet costs one header ``pack``, one
SRTP ``protect`` and one ``sendto``. Each frame gets a fresh VP8 descriptor whose PictureID names
publisher and frame, and its send time is noted for the subscribers' latency figure.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)
from av.frame import Frame

from .clip import AUDIO_PACKETS_PER_SECOND, FPS, VIDEO_CLOCK, Clip, picture_id

__all__ = ["CONFIGURATION", "IdleTrack", "Publisher", "RtpOut"]

CONFIGURATION = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
_HEADER = struct.Struct("!BBHLLHH")  # RTP fixed header + one-byte header-extension profile/length
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
DTX_EVERY = 20  # a silent Opus sender's one packet per 20 (400 ms), as libwebrtc's DTX
_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RIDS = ("q", "h", "f")


def with_simulcast_offer(offer_sdp: str, rids: tuple[str, ...], ext_id: int) -> str:
    """Offer the video section as simulcast, as a browser does (RFC 8853): the RID extension,
    an ``a=rid`` per layer and ``a=simulcast:send``."""
    lines = offer_sdp.split("\r\n")
    video = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    end = next((i for i in range(video + 1, len(lines)) if lines[i].startswith("m=")), None)
    end = end if end is not None else len(lines) - 1  # before the closing empty line
    added = [f"a=extmap:{ext_id} {_RID_URI}"]
    added += [f"a=rid:{rid} send" for rid in rids]
    added.append(f"a=simulcast:send {';'.join(rids)}")
    return "\r\n".join(lines[:end] + added + lines[end:])


class IdleTrack(MediaStreamTrack):
    """Stands in a sender so aiortc negotiates it; it never yields, so aiortc never encodes."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Frame:
        await asyncio.get_running_loop().create_future()  # forever
        raise AssertionError


class RtpOut:
    """One negotiated sender whose RTP we write ourselves: header, SRTP, straight to the socket."""

    def __init__(self, sender: RTCRtpSender, on_keyframe_request: Callable[[], None]) -> None:
        self._sender: Any = sender
        self._on_keyframe_request = on_keyframe_request
        self.bound = False
        self.seq = 0
        self.packets = 0
        self.keyframe_requests = 0
        self.nacked = 0
        self._pt = 0
        self._ssrc = 0
        self._srtp: Any = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self.mid_ext = b""
        self.abs_ext_header = b""
        self.level_ext_header = b""
        # Simulcast: one SSRC and sequence per layer, low to high (the top one is the
        # sender's own SSRC, the one the offer names).
        self.layer_ssrcs: list[int] = []
        self.layer_seqs: list[int] = []
        hooked: Any = sender  # per instance, as media/forwarder.py does for its senders
        self._original_send = hooked.send
        self._original_rtcp = hooked._handle_rtcp_packet
        hooked.send = self._send
        hooked._handle_rtcp_packet = self._handle_rtcp

    async def _send(self, parameters: RTCRtpSendParameters) -> None:
        await self._original_send(parameters)
        self._pt = parameters.codecs[0].payloadType or 0
        for ext in parameters.headerExtensions:
            if ext.uri == _MID_URI and parameters.muxId:
                mid = parameters.muxId.encode()
                self.mid_ext = bytes([(ext.id << 4) | (len(mid) - 1)]) + mid
            elif ext.uri == _ABS_SEND_TIME_URI:
                self.abs_ext_header = bytes([(ext.id << 4) | 2])
            elif ext.uri == _AUDIO_LEVEL_URI:
                self.level_ext_header = bytes([ext.id << 4])
        dtls = self._sender.transport
        pair = dtls.transport._connection._nominated.get(1)
        self._srtp = dtls._tx_srtp
        self._sendto = pair.protocol.transport.sendto
        self._addr = pair.remote_addr
        self._ssrc = self._sender._ssrc
        self.seq = self._sender._ssrc & 0x7FFF
        if self.layer_ssrcs:
            self.layer_ssrcs[-1] = self._ssrc
            for ssrc in self.layer_ssrcs:  # so the SFU's PLI for any layer reaches us
                dtls._rtp_router.register_sender(self._sender, ssrc)
        self.bound = True

    async def _handle_rtcp(self, packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.keyframe_requests += 1
            self._on_keyframe_request()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.nacked += len(packet.lost)  # not repaired: loopback loses only under overload
        await self._original_rtcp(packet)

    def add_layers(self, count: int) -> None:
        """Send ``count`` simulcast layers (``send_layer``) instead of one stream."""
        self.layer_ssrcs = [random.getrandbits(32) for _ in range(count)]
        self.layer_seqs = [random.getrandbits(15) for _ in range(count)]

    def send_layer(
        self, layer: int, marker: int, timestamp: int, ext: bytes, payload: bytes
    ) -> None:
        seq = self.layer_seqs[layer]
        self.layer_seqs[layer] = (seq + 1) & 0xFFFF
        self._write(self.layer_ssrcs[layer], seq, marker, timestamp, ext, payload)

    def send(self, marker: int, timestamp: int, ext: bytes, payload: bytes) -> None:
        """``ext``: the one-byte header extensions, already padded to 4 bytes."""
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        self._write(self._ssrc, seq, marker, timestamp, ext, payload)

    def _write(
        self, ssrc: int, seq: int, marker: int, timestamp: int, ext: bytes, payload: bytes
    ) -> None:
        data = (
            _HEADER.pack(
                0x90, (marker << 7) | self._pt, seq, timestamp, ssrc, 0xBEDE, len(ext) >> 2
            )
            + ext
            + payload
        )
        assert self._sendto is not None
        self._sendto(self._srtp.protect(data), self._addr)
        self.packets += 1


def _pad(ext: bytes) -> bytes:
    return ext + b"\0" * (-len(ext) & 3)


class Publisher:
    """A participant's camera and microphone: the clip, sent as RTP on an up connection."""

    def __init__(self, index: int, clip: Clip, sent_at: dict[int, float]) -> None:
        """With a clip that has ``lower`` layers, the camera is published as simulcast."""
        self.index = index
        self.name = f"p{index:02d}"
        self.pc = RTCPeerConnection(CONFIGURATION)
        self._clip = clip
        self._sent_at = sent_at
        self._keyframe_wanted = True
        self._position = 0
        self.frames_sent = 0
        self.frames_skipped = 0
        self._video_ts = index * 0x01000000
        self._audio_ts = index * 0x01000000
        self._audio_position = 0
        # False: silent, sending as a browser with Opus DTX does (``usedtx=1``, which the SFU
        # asks for): one comfort-noise packet every 400 ms instead of one every 20 ms.
        self.talking = True
        self._silent_packets = 0
        video = self.pc.addTransceiver(IdleTrack("video"), direction="sendonly")
        audio = self.pc.addTransceiver(IdleTrack("audio"), direction="sendonly")
        self.video = RtpOut(video.sender, self._keyframe_request)
        self.audio = RtpOut(audio.sender, lambda: None)
        self._layers = (*clip.lower, clip)
        self._rid_ext = b""
        if clip.lower:
            self.video.add_layers(len(self._layers))

    def _keyframe_request(self) -> None:
        self._keyframe_wanted = True

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = str(self.pc.localDescription.sdp)
        if len(self._layers) > 1:
            ext_id = 10
            self._rid_ext = bytes([ext_id << 4])  # + the rid's length - 1, then the rid
            sdp = with_simulcast_offer(sdp, RIDS[-len(self._layers) :], ext_id)
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    def send_frame(self) -> None:
        out = self.video
        if not out.bound:
            return
        clip = self._clip.video
        if self._keyframe_wanted:
            # Restart the clip at its keyframe: what follows decodes from it.
            self._keyframe_wanted = False
            self._position = 0
        position = self._position
        frame = clip[position]
        self._position = position + 1 if position + 1 < len(clip) else 1
        pid = picture_id(self.index, self.frames_sent)
        self.frames_sent += 1
        ts = self._video_ts
        self._video_ts = (ts + VIDEO_CLOCK // FPS) & 0xFFFFFFFF
        ext = out.mid_ext
        if out.abs_ext_header:
            ntp = int((time.time() + 2208988800) * 4294967296.0)
            ext += out.abs_ext_header + ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big")
        descriptor = bytes([0x80, 0x80, 0x80 | (pid >> 8), pid & 0xFF])
        if len(self._layers) == 1:
            self._send_chunks(None, ts, _pad(ext), descriptor, frame.chunks)
        else:
            rids = RIDS[-len(self._layers) :]
            for layer, clip in enumerate(self._layers):
                rid = rids[layer].encode()
                rid_ext = bytes([self._rid_ext[0] | (len(rid) - 1)]) + rid
                chunks = clip.video[position].chunks
                self._send_chunks(layer, ts, _pad(ext + rid_ext), descriptor, chunks)
        self._sent_at[pid] = time.monotonic()

    def _send_chunks(
        self, layer: int | None, ts: int, ext: bytes, descriptor: bytes, chunks: tuple[bytes, ...]
    ) -> None:
        out = self.video
        last = len(chunks) - 1
        for i, chunk in enumerate(chunks):
            # X=1, S=1 on the first packet of the frame; I=1; M=1 (15-bit PictureID).
            head = b"\x90" + descriptor[1:] if i == 0 else descriptor
            if layer is None:
                out.send(int(i == last), ts, ext, head + chunk)
            else:
                out.send_layer(layer, int(i == last), ts, ext, head + chunk)

    def send_audio(self) -> None:
        out = self.audio
        if not out.bound:
            return
        packets = self._clip.audio
        ts = self._audio_ts
        self._audio_ts = (ts + 48000 // AUDIO_PACKETS_PER_SECOND) & 0xFFFFFFFF
        if self.talking:
            self._silent_packets = 0
            payload = packets[self._audio_position]
            self._audio_position = (self._audio_position + 1) % len(packets)
            level = b"\x28"  # voice at -40 dBov
        else:
            self._silent_packets += 1
            if self._silent_packets % DTX_EVERY != 1:
                return
            payload = packets[0][:1]  # the TOC byte alone: a frame with no data, DTX
            level = b"\x7f"  # silence, -127 dBov, no voice activity
        ext = out.mid_ext
        if out.level_ext_header:
            ext += out.level_ext_header + level
        out.send(0, ts, _pad(ext), payload)

    async def close(self) -> None:
        await self.pc.close()
