"""Three real aiortc browsers through the in-process SFU: media is forwarded, never transcoded."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest

from media.events import MediaJoined
from media.local import LocalSfu

from .browser import BrowserPeer, EventLog, track_id

NAMES = ["hangzhou", "rochester", "pathology"]


@pytest.fixture
def codec_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Count every decoder and encoder aiortc creates, wherever it is created."""
    calls: Counter[str] = Counter()
    get_decoder = aiortc.rtcrtpreceiver.get_decoder
    get_encoder = aiortc.rtcrtpsender.get_encoder

    def counting_decoder(codec: Any) -> Any:
        calls["decoder " + codec.mimeType] += 1
        return get_decoder(codec)

    def counting_encoder(codec: Any) -> Any:
        calls["encoder " + codec.mimeType] += 1
        return get_encoder(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", counting_decoder)
    monkeypatch.setattr(aiortc.rtcrtpsender, "get_encoder", counting_encoder)
    yield calls


def server_side(sfu: LocalSfu, room: str) -> tuple[list[Any], list[Any]]:
    """The SFU's aiortc receivers (up) and senders (down) in ``room``."""
    participants = sfu._rooms[room]._participants.values()
    receivers = [t.receiver for p in participants for t in p.up.pc.getTransceivers()]
    senders = [t.sender for p in participants if p.down for t in p.down.pc.getTransceivers()]
    return receivers, senders


async def has_receiver_reports(browser: BrowserPeer, seconds: float = 5.0) -> bool:
    """Whether ``browser``'s up connection got receiver reports for both its tracks (polled:
    the SFU sends one every 0.5–1.5 s)."""
    for _ in range(int(seconds / 0.1)):
        stats = (await browser.up.getStats()).values()
        if {s.kind for s in stats if s.type == "remote-inbound-rtp"} == {"audio", "video"}:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_three_participants_receive_each_other_without_server_transcoding(
    sfu: LocalSfu, events: EventLog, codec_calls: Counter[str]
) -> None:
    browsers = [BrowserPeer(events, "board", name) for name in NAMES]
    try:
        for browser in browsers:
            await browser.publish()
        for browser in browsers:
            await events.wait_for(MediaJoined, browser.name)

        for browser in browsers:
            others = [b.name for b in browsers if b is not browser]
            wanted = [track_id(o, kind) for o in others for kind in ("video", "audio")]
            await browser.wait_frames(wanted, count=15)

        stats = await sfu.stats("board")
        assert (stats.participants, stats.up_tracks, stats.down_tracks) == (3, 6, 12)
        assert stats.packets_forwarded > 0
        await asyncio.sleep(0.3)
        assert (await sfu.stats("board")).packets_forwarded > stats.packets_forwarded

        # Only the browsers coded media: 3 cameras + 3 microphones encoded, and each browser
        # decodes the 2 others' video and audio. One more call would be the server's.
        assert codec_calls == Counter(
            {
                "encoder video/VP8": 3,
                "encoder audio/opus": 3,
                "decoder video/VP8": 6,
                "decoder audio/opus": 6,
            }
        )
        receivers, senders = server_side(sfu, "board")
        assert len(receivers) == 6 and len(senders) == 12
        for receiver in receivers:
            assert receiver._RTCRtpReceiver__decoder_thread is None
        for sender in senders:
            assert sender._RTCRtpSender__encoder is None

        # The SFU reports reception to each publisher (its bandwidth estimate needs it).
        for browser in browsers:
            assert await has_receiver_reports(browser), f"{browser.name} got no receiver report"
    finally:
        for browser in browsers:
            await browser.close()
