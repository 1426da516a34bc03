"""Revocations: access tokens given up before they expire (a logout).

The database holds them, so every server process refuses a revoked token. A process
remembers a "not revoked" answer for ``ttl`` seconds at most, so a viewer's burst of
frame requests does not ask the database each time; a revocation made in this process
is seen at once, one made by another process within ``ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlmodel import col

from .db import AsyncSession, Database
from .models import RevokedToken, utcnow

__all__ = ["Revocations"]


class Revocations:
    def __init__(
        self, *, ttl: float = 2.0, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._valid: dict[str, float] = {}  # jti -> until when "not revoked" may be reused
        self._revoked_here: dict[str, int] = {}  # jti -> when its token expires (epoch s)

    async def revoke(
        self, session: AsyncSession, *, jti: str, user_id: int, expires_at: int
    ) -> None:
        """Record ``jti`` as revoked in ``session``'s unit of work; forget revocations whose
        tokens have expired anyway."""
        now = utcnow()
        # Refused here at once, before the unit commits (a refusal too many is the safe side).
        self._revoked_here = {
            k: exp for k, exp in self._revoked_here.items() if exp > now.timestamp()
        }
        self._revoked_here[jti] = expires_at
        await session.exec(delete(RevokedToken).where(col(RevokedToken.expires_at) < now))
        if await session.get(RevokedToken, jti) is None:
            until = datetime.fromtimestamp(expires_at, UTC)
            session.add(RevokedToken(jti=jti, user_id=user_id, expires_at=until))

    async def revoked(self, db: Database, jti: str) -> bool:
        if jti in self._revoked_here:
            return True
        now = self._clock()
        if self._valid.get(jti, -1.0) > now:
            return False
        async with db.read() as session:
            found = await session.get(RevokedToken, jti) is not None
        if not found:
            if len(self._valid) >= self._size:
                self._valid.clear()
            self._valid[jti] = now + self._ttl
        return found
