"""SpeakerDetector: who is talking, from the RFC 6464 audio levels publishers put on their audio
packets, debounced so a cough does not move the spotlight."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["SpeakerDetector"]

_SILENCE = 127  # RFC 6464 levels are -dBov: 0 is the loudest, 127 silence


class SpeakerDetector:
    """Announces (``on_change``) the participant who has been the loudest, above ``threshold``
    dBov, for ``hold`` seconds. Loudness is a moving average of the packet levels; a participant
    whose packets stopped (muted, DTX) counts as silent after ``stale`` seconds."""

    def __init__(
        self,
        on_change: Callable[[str], None],
        *,
        hold: float = 1.0,
        threshold: int = -50,
        stale: float = 0.5,
        smoothing: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_change = on_change
        self._hold = hold
        self._floor = _SILENCE + threshold  # loudness = 127 - level; above floor = speech
        self._stale = stale
        self._smoothing = smoothing
        self._clock = clock
        self._loudness: dict[str, float] = {}
        self._heard: dict[str, float] = {}
        self._candidate: str | None = None
        self._since = 0.0
        self.current: str | None = None

    def level(self, participant: str, level: int) -> None:
        """One audio packet's level (0–127, -dBov) from ``participant``."""
        now = self._clock()
        previous = self._loudness.get(participant, 0.0)
        self._loudness[participant] = previous + self._smoothing * (_SILENCE - level - previous)
        self._heard[participant] = now
        self._decide(now)

    def remove(self, participant: str) -> None:
        self._loudness.pop(participant, None)
        self._heard.pop(participant, None)
        if self._candidate == participant:
            self._candidate = None
        if self.current == participant:
            self.current = None

    def _decide(self, now: float) -> None:
        loudest, loudness = None, float(self._floor)
        for participant, value in self._loudness.items():
            if value > loudness and now - self._heard[participant] <= self._stale:
                loudest, loudness = participant, value
        if loudest is None or loudest == self.current:
            self._candidate = None
            return
        if loudest != self._candidate:
            self._candidate, self._since = loudest, now
        elif now - self._since >= self._hold:
            self.current, self._candidate = loudest, None
            self._on_change(loudest)
