"""Rate limits: TokenBucket, a per-connection allowance of events per second with a burst;
LoginThrottle, which slows password guessing."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["TokenBucket", "LoginThrottle"]


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class LoginThrottle:
    """Failed logins over a sliding window, per username from one address and per username
    from anywhere; past either limit, a login is refused before its password is checked.

    Per username (not per address alone): behind a hospital's proxy every login comes from one
    address, and one person's typos must not lock everyone out. The price is that someone who
    fails a user's password ``per_user`` times locks that user out for up to a window; the
    failures are audited. Kept in this process's memory.
    """

    def __init__(
        self,
        *,
        window: float = 900.0,
        per_pair: int = 5,
        per_user: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._limits = {"pair": per_pair, "user": per_user}
        self._clock = clock
        self._failures: dict[tuple[str, ...], deque[float]] = {}

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, tuple[str, ...]]:
        name = username.casefold()
        return {"pair": ("pair", name, address), "user": ("user", name)}

    def wait(self, username: str, address: str) -> int:
        """Whole seconds until ``username`` may try again from ``address`` (0: now)."""
        now = self._clock()
        longest = 0.0
        for kind, key in self._keys(username, address).items():
            times = self._recent(key, now, keep=False)
            if len(times) >= self._limits[kind]:
                # Allowed again once enough of the failures have left the window.
                oldest_that_counts = times[len(times) - self._limits[kind]]
                longest = max(longest, oldest_that_counts + self.window - now)
        return math.ceil(longest)

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        for key in self._keys(username, address).values():
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # many names tried: drop what has left the window
            for key in list(self._failures):
                if not self._recent(key, now, keep=False):
                    del self._failures[key]

    def succeeded(self, username: str, address: str) -> None:
        for key in self._keys(username, address).values():
            self._failures.pop(key, None)

    def _recent(self, key: tuple[str, ...], now: float, keep: bool = True) -> deque[float]:
        """The failures of ``key`` still in the window (``keep``: held for appending to)."""
        times = (
            self._failures.setdefault(key, deque()) if keep else self._failures.get(key, deque())
        )
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
