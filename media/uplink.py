"""Uplink: a publisher's up connection at the packet level, before its tracks see a packet.

aiortc routes an incoming packet by SSRC, else by payload type. A simulcast camera sends its
layers on SSRCs the offer never named, with the camera's payload type, which a presenter's
screen shares: so packets are routed here by the MID header extension first (RFC 8843), their
SSRC learned for the packets that no longer carry it. And where the publisher took transport-cc,
every packet's transport-wide sequence number and arrival time are recorded, and feedback goes
back every 50 ms: the browser's send-side estimate, hence its encoder's bitrate and the layers it
keeps sending, follows its real uplink instead of guessing.

Like ``forwarder`` and ``downlink`` it reaches into aiortc's DTLS transport (its RTP entry point,
header extension map and router); the list is kept by ``tests/media/test_aiortc_contract.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import RtpPacket

from .twcc import TWCC_URI, TwccRecorder

__all__ = ["Uplink", "RID_URI", "REPAIRED_RID_URI"]

logger = logging.getLogger(__name__)

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
FEEDBACK_INTERVAL = 0.05  # seconds
_MAX_LEARNED = 16  # SSRCs learned from the MID extension, per connection


class Uplink:
    """Routing and transport-cc for one up connection's DTLS transport."""

    def __init__(
        self,
        extensions: dict[str, int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``extensions``: the header extension ids the offer gave (by URI) that aiortc does
        not negotiate itself but our answer accepted (transport-cc, the RIDs)."""
        self._extensions = extensions
        self._clock = clock
        self._dtls: Any = None
        self._learned = 0
        self.recorder = TwccRecorder() if TWCC_URI in extensions else None
        self._task: asyncio.Task[None] | None = None
        self._media_ssrc = 0
        self.feedback_sent = 0

    def install(self, dtls: Any) -> None:
        """Take over ``dtls``'s RTP entry point (once)."""
        if self._dtls is not None:
            return
        self._dtls = dtls
        if self._extensions:
            dtls._rtp_header_extensions_map.configure(
                RTCRtpParameters(
                    headerExtensions=[
                        RTCRtpHeaderExtensionParameters(id=i, uri=uri)
                        for uri, i in self._extensions.items()
                    ]
                )
            )
        dtls._handle_rtp_data = self._handle_rtp_data
        if self.recorder is not None:
            self._task = asyncio.ensure_future(self._feedback_loop())

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        dtls = self._dtls
        try:
            packet = RtpPacket.parse(data, dtls._rtp_header_extensions_map)
        except ValueError:
            return
        seq = packet.extensions.transport_sequence_number
        if seq is not None and self.recorder is not None:
            self.recorder.record(seq, self._clock())
            if not self._media_ssrc:
                self._media_ssrc = packet.ssrc
        router = dtls._rtp_router
        receiver = router.ssrc_table.get(packet.ssrc)
        if receiver is None and packet.extensions.mid is not None:
            receiver = router.mid_table.get(packet.extensions.mid)
            if receiver is not None and self._learned < _MAX_LEARNED:
                self._learned += 1
                router.ssrc_table[packet.ssrc] = receiver
        if receiver is None:
            receiver = router.route_rtp(packet)
        if receiver is not None:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)

    async def _feedback_loop(self) -> None:
        recorder = self.recorder
        assert recorder is not None
        while True:
            await asyncio.sleep(FEEDBACK_INTERVAL)
            for packet in recorder.feedback(self._rtcp_ssrc(), self._media_ssrc):
                try:
                    await self._dtls._send_rtp(packet)
                except ConnectionError:
                    return
                self.feedback_sent += 1

    def _rtcp_ssrc(self) -> int:
        receivers = self._dtls._rtp_router.receivers
        for receiver in receivers:
            ssrc = getattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", None)
            if ssrc is not None:
                return int(ssrc)
        return 1

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
