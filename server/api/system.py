"""REST: health, the OpenAPI document, metrics and the audit chain's state."""

from __future__ import annotations

import ipaddress

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from ..accounts import token_user
from ..errors import Forbidden, Unauthenticated
from ..metrics import METRICS
from ..security import Role
from .openapi import openapi_document
from .responses import AuditVerifyOut, HealthOut, OpenObject
from .roles import ADMINS
from .routing import PUBLIC, Call, RouteTable, bearer_token

routes = RouteTable()


@routes.add(
    "GET",
    "/api/health",
    roles=PUBLIC,
    summary="Check liveness and the database",
    tag="system",
    response=HealthOut,
    answers=(503,),
)
async def get_health(call: Call) -> web.Response:
    try:
        await call.services.db.ping()
    except (SQLAlchemyError, OSError) as exc:
        return web.json_response(
            {"status": "degraded", "database": f"unreachable ({type(exc).__name__})"}, status=503
        )
    return web.json_response({"status": "ok", "database": "ok"})


@routes.add(
    "GET",
    "/api/openapi.json",
    roles=PUBLIC,
    summary="The OpenAPI document",
    tag="system",
    response=OpenObject,
)
async def get_openapi(call: Call) -> dict[str, object]:
    return openapi_document(call.request.app)


@routes.add(
    "GET",
    "/metrics",
    roles=PUBLIC,
    summary="Prometheus metrics",
    tag="system",
    media_types=("text/plain",),
)
async def get_metrics(call: Call) -> web.Response:
    """For the host's own scraper (loopback, not forwarded by a proxy) and for admins."""
    if not _from_this_host(call.request) and not await _admin(call):
        raise Forbidden("metrics are served to admins and to this host's own scraper only")
    body = generate_latest(call.request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.add(
    "GET",
    "/api/audit/verify",
    roles=ADMINS,
    summary="Verify the audit hash chain",
    tag="system",
    response=AuditVerifyOut,
)
async def get_audit_verify(call: Call) -> dict[str, object]:
    count, breaks = await call.services.audit.verify(call.session)
    return {
        "records": count,
        "intact": not breaks,
        "breaks": [{"record_id": b.record_id, "reason": b.reason} for b in breaks],
    }


def _from_this_host(request: web.Request) -> bool:
    # A proxy on the same host makes every browser look local: what it forwards is not.
    if "Forwarded" in request.headers or "X-Forwarded-For" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


async def _admin(call: Call) -> bool:
    token = bearer_token(call.request)
    if token is None:
        return False
    try:
        user = await token_user(call.services, token)
    except Unauthenticated:
        return False
    return user.role == Role.ADMIN
