"""The aiortc / aioice / pylibsrtp internals the forwarder relies on are still where it expects.

If this fails after an upgrade, read the message: it names the attribute and what the forwarder
uses it for. Fix ``media/forwarder.py``, ``media/uplink.py`` or ``media/downlink.py`` (the only
modules that touch these), then the pins.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aioice.ice
import aiortc.rtcdtlstransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp
import pytest
from aiortc import RTCPeerConnection

from media.forwarder import (
    RECEIVER_RTCP_SSRC,
    SENDER_NTP,
    SENDER_OCTETS,
    SENDER_PACKETS,
    SENDER_RTP,
    ForwardedTrack,
)

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def require(owner: Any, name: str, why: str) -> Any:
    if not hasattr(owner, name):
        label = getattr(owner, "__name__", type(owner).__name__)
        pytest.fail(
            f"aiortc {version('aiortc')}: {label}.{name} is gone; the forwarder uses "
            f"it {why}. Update media/forwarder.py and the pins in pyproject.toml."
        )
    return getattr(owner, name)


def require_source(function: Any, fragment: str, why: str) -> None:
    source = inspect.getsource(function)
    if fragment not in source:
        pytest.fail(
            f"aiortc {version('aiortc')}: {function.__qualname__} no longer contains "
            f"{fragment!r}; the forwarder relies on it {why}."
        )


def test_pinned_versions_are_the_installed_ones() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = dict(
        re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups()  # type: ignore[union-attr]
        for d in dependencies
        if "==" in d
    )
    for package in ("aiortc", "aioice", "pylibsrtp", "av"):
        assert package in pins, f"pyproject.toml must pin {package}==<version> exactly"
        assert version(package) == pins[package], (
            f"{package} {version(package)} is installed but {pins[package]} is pinned: run "
            "this contract test against the new version before moving the pin"
        )


async def test_receiver_internals() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        for name in ("receive", "stop", "_handle_rtp_packet", "_handle_rtcp_packet"):
            require(receiver, name, "as the hook that keeps RTP away from the decoder")
        assert list(inspect.signature(receiver._handle_rtp_packet).parameters) == [
            "packet",
            "arrival_time_ms",
        ], "RTCRtpReceiver._handle_rtp_packet changed signature"
        require(receiver, RECEIVER_RTCP_SSRC, "as the sender SSRC of PLI/NACK upstream")
        require(receiver, "_RTCRtpReceiver__decoder_thread", "in tests, to prove no decoding")
        # The decoder thread must start in receive(), the method the forwarder replaces.
        require_source(
            aiortc.rtcrtpreceiver.RTCRtpReceiver.receive,
            "decoder_worker",
            "to start no decoder thread when receive() is replaced",
        )
        require(aiortc.rtcrtpreceiver, "get_decoder", "in tests, to count decoders")
    finally:
        await pc.close()


async def test_sender_internals() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver(ForwardedTrack("video", "t"), direction="sendonly").sender
        for name in ("send", "stop", "_handle_rtcp_packet"):
            require(sender, name, "as the hook that learns parameters and receives PLI/NACK")
        for name, why in (
            ("_ssrc", "as the down-track SSRC"),
            ("_rtx_ssrc", "for RTX"),
            ("_stream_id", "as the msid stream id (whose track it is)"),
            (SENDER_NTP, "for sender reports"),
            (SENDER_RTP, "for sender reports"),
            (SENDER_PACKETS, "for sender reports"),
            (SENDER_OCTETS, "for sender reports"),
            ("_RTCRtpSender__encoder", "in tests, to prove no encoding"),
        ):
            require(sender, name, why)
        # The encoder is only created after the track yields a frame, which ours never does.
        source = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender._next_encoded_frame)
        assert source.index("self.__track.recv()") < source.index("get_encoder("), (
            "RTCRtpSender now creates its encoder before reading the track: the forwarder's "
            "down senders would build encoders"
        )
        require_source(
            aiortc.rtcrtpsender.RTCRtpSender._run_rtcp,
            "__packet_count",
            "to put the forwarded packet counts in sender reports",
        )
        require(aiortc.rtcrtpsender, "get_encoder", "in tests, to count encoders")
        require(ForwardedTrack("audio", "x"), "_id", "as the msid track id")
    finally:
        await pc.close()


def test_dtls_transport_internals() -> None:
    dtls = aiortc.rtcdtlstransport.RTCDtlsTransport
    for name in ("_register_rtp_receiver", "_unregister_rtp_receiver", "_send_rtp"):
        require(dtls, name, "to register the hooked receiver and send RTCP upstream")
    require_source(dtls._setup_srtp, "self._tx_srtp", "as the down peer's SRTP context")
    require_source(
        dtls._setup_srtp,
        "allow_repeat_tx = True",
        "to retransmit a packet with its original sequence number",
    )
    require_source(
        dtls._handle_rtp_data,
        "_handle_rtp_packet(",
        "to hand each parsed RTP packet to the (hooked) receiver",
    )
    require_source(
        dtls._handle_rtcp_data,
        "_handle_rtcp_packet(",
        "to hand subscriber RTCP to the (hooked) sender",
    )
    require_source(
        dtls._recv_next,
        "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
        "as the up connection's RTP entry point, replaced per instance by media.uplink",
    )
    require_source(
        dtls._recv_next,
        "await self._handle_rtcp_data(data)",
        "as the down connection's RTCP entry point, wrapped by media.downlink for feedback",
    )
    require_source(
        dtls.__init__, "self._rtp_header_extensions_map", "to parse the RID and transport-cc"
    )
    require_source(dtls.__init__, "self._rtp_router", "to route simulcast layers by MID")
    router = aiortc.rtcdtlstransport.RtpRouter()
    for name in ("ssrc_table", "mid_table", "receivers"):
        require(router, name, "to route a simulcast layer's new SSRC by its MID")
    require(router, "route_rtp", "to route what the MID does not")
    require_source(
        aiortc.rtp.HeaderExtensionsMap.configure,
        "draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "to read each packet's transport-wide sequence number",
    )
    require_source(
        aiortc.rtp.HeaderExtensionsMap.configure,
        "sdes:repaired-rtp-stream-id",
        "to tell a simulcast layer's retransmissions apart",
    )
    ice = aiortc.rtcicetransport.RTCIceTransport
    require_source(ice.__init__, "self._connection", "to reach the aioice Connection")


def test_aioice_internals() -> None:
    connection = aioice.ice.Connection(ice_controlling=True)
    nominated = require(connection, "_nominated", "to find the selected pair to send on")
    assert isinstance(nominated, dict), "aioice Connection._nominated is no longer a dict"
    pair = aioice.ice.CandidatePair
    require_source(pair.__init__, "self.protocol", "to send on the pair's protocol")
    assert "remote_addr" in dir(pair), "aioice CandidatePair.remote_addr is gone"
    assert inspect.iscoroutinefunction(aioice.ice.StunProtocol.send_data), (
        "aioice StunProtocol.send_data is no longer a coroutine"
    )
    require_source(
        aioice.ice.StunProtocol.send_data,
        "self.transport.sendto(data, addr)",
        "as what media.downlink does itself, synchronously, from its pacer",
    )
    require(aioice.ice, "get_host_addresses", "in tests, to gather loopback candidates")


def test_rtp_packet_fields() -> None:
    packet = aiortc.rtp.RtpPacket()
    for name in (
        "sequence_number",
        "timestamp",
        "payload_type",
        "marker",
        "payload",
        "ssrc",
        "padding_size",
        "extensions",
    ):
        require(packet, name, "to rewrite the packet for each down-track")
    require(packet.extensions, "audio_level", "to copy the RFC 6464 level to subscribers")
    for name in ("mid", "rtp_stream_id", "repaired_rtp_stream_id", "transport_sequence_number"):
        require(packet.extensions, name, "to route simulcast layers and record transport-cc")
    require(aiortc.rtp.RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2), "lost", "to answer NACKs")


def test_peer_connection_starts_senders_and_receivers_with_parameters() -> None:
    connect = aiortc.rtcpeerconnection.RTCPeerConnection._RTCPeerConnection__connect  # type: ignore[attr-defined]
    require_source(connect, "transceiver.sender.send(", "to learn the negotiated parameters")
    require_source(connect, "transceiver.receiver.receive(", "to register the up-track")
