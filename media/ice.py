"""IceConfig: STUN/TURN servers for a participant, with short-lived coturn REST-API credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from .sfu import IceServer

__all__ = ["IceConfig", "turn_credentials"]


def turn_credentials(
    secret: str, user: str, ttl_seconds: int, now: float | None = None
) -> tuple[str, str]:
    """coturn's REST-API form (``use-auth-secret``): the username is ``expiry:user`` and the
    password is base64(HMAC-SHA1(secret, username))."""
    expiry = int((now if now is not None else time.time()) + ttl_seconds)
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class IceConfig:
    """What the server was configured with; ``servers_for`` mints per-participant credentials."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    ttl_seconds: int = 3600

    def servers_for(self, user: str) -> list[IceServer]:
        servers = [IceServer(urls=list(self.stun_urls))] if self.stun_urls else []
        if self.turn_urls and self.turn_secret:
            username, credential = turn_credentials(self.turn_secret, user, self.ttl_seconds)
            servers.append(IceServer(list(self.turn_urls), username, credential))
        return servers
