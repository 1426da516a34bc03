"""Active speaker: debounced, from the audio levels publishers send with their audio."""

from __future__ import annotations

import fractions
import math

from aiortc import AudioStreamTrack
from av import AudioFrame

from media.events import ActiveSpeaker
from media.local import LocalSfu
from media.speaker import SpeakerDetector

from .browser import BrowserPeer, EventLog, SmallCamera


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def talk(detector: SpeakerDetector, clock: Clock, seconds: float, **levels: int) -> None:
    """Feed 50 packets a second of ``levels`` (participant → -dBov) for ``seconds``."""
    for _ in range(round(seconds * 50)):
        clock.now += 0.02
        for participant, level in levels.items():
            detector.level(participant, level)


def test_speaker_is_announced_after_holding_the_floor() -> None:
    clock, changes = Clock(), []
    detector = SpeakerDetector(changes.append, hold=1.0, clock=clock)

    talk(detector, clock, 0.9, a=20, b=127)
    assert changes == []  # not yet held for a second
    talk(detector, clock, 0.5, a=20, b=127)
    assert changes == ["a"]

    talk(detector, clock, 0.4, a=127, b=25)  # b interjects briefly
    talk(detector, clock, 1.0, a=20, b=127)
    assert changes == ["a"]

    talk(detector, clock, 2.0, a=127, b=25)
    assert changes == ["a", "b"]


def test_silence_and_background_noise_announce_nobody() -> None:
    clock, changes = Clock(), []
    detector = SpeakerDetector(changes.append, clock=clock)
    talk(detector, clock, 3.0, a=127, b=70)  # -70 dBov: room noise, not speech
    assert changes == []


def test_a_participant_whose_packets_stop_is_silent() -> None:
    clock, changes = Clock(), []
    detector = SpeakerDetector(changes.append, clock=clock)
    talk(detector, clock, 1.5, a=20)
    talk(detector, clock, 2.0, b=40)  # a went quiet with DTX: no packets at all
    assert changes == ["a", "b"]


class Tone(AudioStreamTrack):
    """A 440 Hz tone at about -9 dBov: a participant talking."""

    async def recv(self) -> AudioFrame:
        silent = await super().recv()
        samples = silent.samples
        frame = AudioFrame(format="s16", layout="mono", samples=samples)
        start = silent.pts or 0
        data = b"".join(
            int(12000 * math.sin(2 * math.pi * 440 * (start + i) / 8000)).to_bytes(
                2, "little", signed=True
            )
            for i in range(samples)
        )
        frame.planes[0].update(data)
        frame.pts = start
        frame.sample_rate = 8000
        frame.time_base = fractions.Fraction(1, 8000)
        return frame


async def test_the_participant_talking_becomes_the_active_speaker(
    sfu: LocalSfu, events: EventLog
) -> None:
    quiet = BrowserPeer(events, "board", "quiet")
    talker = BrowserPeer(events, "board", "talker")
    try:
        await quiet.publish()
        await talker.publish(SmallCamera(), Tone())

        speaker = await events.wait_for(ActiveSpeaker, "talker", seconds=10)

        assert speaker == ActiveSpeaker("board", "talker")
        assert events.of(ActiveSpeaker, "quiet") == []
    finally:
        for browser in (quiet, talker):
            await browser.close()
