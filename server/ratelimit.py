"""Rate limits: TokenBucket, a per-connection allowance of events per second with a burst;
LoginThrottle, which slows password guessing (per user, per address and overall)."""

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
    """Failed logins over a sliding window; past any limit, a login is refused before its
    password is checked. Four limits:

    - per username from one address (``per_pair``) and per username from anywhere
      (``per_user``): slow guessing one person's password. Per username, not per address
      alone: behind a hospital's proxy every login comes from one address, and one person's
      typos must not lock everyone out. The price is that someone who fails a user's
      password ``per_user`` times locks that user out for up to a window.
    - per address across usernames (``per_address`` distinct usernames failed from it): one
      password tried against many usernames. A person's repeated typos count once, so a
      proxy's users are held back only when that many different accounts fail from it.
    - everything (``overall``): a circuit against guessing spread over many addresses; when
      it opens every login waits, which is the price of not being guessed at scale.

    Failures are audited. Kept in this process's memory.
    """

    def __init__(
        self,
        *,
        window: float = 900.0,
        per_pair: int = 5,
        per_user: int = 20,
        per_address: int = 20,
        overall: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._limits = {"pair": per_pair, "user": per_user, "address": per_address, "all": overall}
        self._clock = clock
        self._failures: dict[tuple[str, ...], deque[float]] = {}

    @staticmethod
    def _keys(username: str, address: str) -> dict[str, tuple[str, ...]]:
        name = username.casefold()
        return {
            "pair": ("pair", name, address),
            "user": ("user", name),
            "address": ("address", address),
            "all": ("all",),
        }

    def wait(self, username: str, address: str) -> int:
        """Whole seconds until ``username`` may try again from ``address`` (0: now)."""
        return math.ceil(max((w for _, w in self._waits(username, address)), default=0.0))

    def why(self, username: str, address: str) -> str:
        """Which limit holds the login back: "user", "address" or "all" (pair counts as user)."""
        kinds = [kind for kind, w in self._waits(username, address) if w > 0]
        for kind in ("all", "address"):
            if kind in kinds:
                return kind
        return "user"

    def _waits(self, username: str, address: str) -> list[tuple[str, float]]:
        now = self._clock()
        waits = []
        for kind, key in self._keys(username, address).items():
            times = self._recent(key, now, keep=False)
            if len(times) >= self._limits[kind]:
                # Allowed again once enough of the failures have left the window.
                oldest_that_counts = times[len(times) - self._limits[kind]]
                waits.append((kind, oldest_that_counts + self.window - now))
        return waits

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        keys = self._keys(username, address)
        # The address counts usernames: not again for one that already failed from it.
        new_name = not self._recent(keys["pair"], now, keep=False)
        for kind, key in keys.items():
            if kind != "address" or new_name:
                self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # many names tried: drop what has left the window
            for key in list(self._failures):
                if not self._recent(key, now, keep=False):
                    del self._failures[key]

    def succeeded(self, username: str, address: str) -> None:
        # The user's own failures are forgiven; what the address and everyone did stands.
        keys = self._keys(username, address)
        for kind in ("pair", "user"):
            self._failures.pop(keys[kind], None)

    def _recent(self, key: tuple[str, ...], now: float, keep: bool = True) -> deque[float]:
        """The failures of ``key`` still in the window (``keep``: held for appending to)."""
        times = (
            self._failures.setdefault(key, deque()) if keep else self._failures.get(key, deque())
        )
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
