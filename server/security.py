"""Roles, password hashing and signed tokens (access tokens and invitations)."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

from .errors import Unauthenticated

__all__ = ["Role", "ALL_ROLES", "Passwords", "Tokens", "TokenClaims"]


class Role(StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    CHAIR = "chair"
    SPECIALIST = "specialist"
    OBSERVER = "observer"
    RECORDS = "records"


ALL_ROLES: frozenset[Role] = frozenset(Role)


class Passwords:
    """argon2id hashing (argon2-cffi's defaults are argon2id)."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()

    @functools.cached_property
    def _dummy(self) -> str:
        # Verifying against this keeps unknown usernames as slow as wrong passwords.
        return self._hasher.hash(secrets.token_hex(16))

    async def hash(self, password: str) -> str:
        # argon2 is deliberately slow (~50 ms): off the event loop.
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, hashed, password)

    def _verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._dummy, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False


@dataclass(frozen=True)
class TokenClaims:
    kind: str
    subject: str
    expires_at: int
    extra: dict[str, Any]
    token_id: str = ""  # the jti: what a logout records as revoked


class Tokens:
    """Signed, expiring JWTs (HS256, joserfc). ``kind`` keeps an invitation from being used
    as an access token and the reverse; each token has its own random id (``jti``)."""

    def __init__(self, secret: bytes) -> None:
        self._key = OctKey.import_key(secret)

    def issue(self, kind: str, subject: str, ttl_seconds: int, **extra: Any) -> tuple[str, int]:
        now = int(time.time())
        exp = now + ttl_seconds
        jti = secrets.token_urlsafe(16)
        claims = {"typ": kind, "sub": subject, "iat": now, "exp": exp, "jti": jti, **extra}
        return jwt.encode({"alg": "HS256"}, claims, self._key), exp

    def verify(self, kind: str, token: str) -> TokenClaims:
        what = "invitation" if kind == "invite" else "token"
        try:
            decoded = jwt.decode(token, self._key, algorithms=["HS256"])
        except (JoseError, ValueError) as exc:
            raise Unauthenticated(f"{what} is invalid (signature or format)") from exc
        claims = dict(decoded.claims)
        registry = JWTClaimsRegistry(exp={"essential": True}, sub={"essential": True})
        try:
            registry.validate(claims)
        except JoseError as exc:
            if "exp" in str(exc) or "expired" in str(exc).lower():
                raise Unauthenticated(f"{what} has expired") from exc
            raise Unauthenticated(f"{what} is invalid ({exc})") from exc
        if claims.get("typ") != kind:
            raise Unauthenticated(f"{what} is invalid (wrong kind of token)")
        extra = {k: v for k, v in claims.items() if k not in {"typ", "sub", "iat", "exp", "jti"}}
        jti = claims.get("jti")
        return TokenClaims(
            kind,
            str(claims["sub"]),
            int(claims["exp"]),
            extra,
            jti if isinstance(jti, str) else "",
        )
