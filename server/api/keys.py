"""REST: the institutions' public signing keys, so anyone can verify an agreed plan."""

from __future__ import annotations

from .responses import Jwks
from .routing import PUBLIC, Call, RouteTable

routes = RouteTable()


@routes.add(
    "GET",
    "/api/keys",
    roles=PUBLIC,
    summary="The public keys that sign agreed plans (JWKS)",
    tag="system",
    response=Jwks,
)
async def get_keys(call: Call) -> dict[str, list[dict[str, str]]]:
    return call.services.signing.jwks()
