"""Middlewares: problem+json errors, structured request logs, metrics, security headers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .errors import EboardError, TooMany
from .metrics import METRICS

__all__ = [
    "USER_ID",
    "problem_response",
    "error_middleware",
    "observe_middleware",
    "headers_middleware",
]

log = logging.getLogger("eboard.requests")
errlog = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Who made the request, for the request log (set once authentication has run).
USER_ID = web.RequestKey("user_id", object)


def problem_response(
    status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None
) -> web.Response:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/problem+json",
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except EboardError as exc:
        response = problem_response(
            exc.status,
            exc.title,
            exc.detail,
            [{"field": e.field, "message": e.message} for e in exc.errors],
        )
        if isinstance(exc, TooMany) and exc.retry_after:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except web.HTTPException as exc:
        if exc.status >= 400 and (request.path.startswith("/api/") or request.path == "/metrics"):
            detail = (
                f"no route {request.method} {request.path}"
                if exc.status in (404, 405)
                else exc.reason
            )
            return problem_response(exc.status, exc.reason, detail)
        raise
    except Exception:
        # The route template, never the path or query: those can carry identifiers.
        errlog.exception("Request(%s %s) failed", request.method, _route_name(request))
        return problem_response(500, "Internal error", "the server failed; the error is logged")


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - start
        route = _route_name(request)
        metrics = request.app[METRICS]
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(elapsed)
        log.info(
            "%s",
            json.dumps(
                {
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                    "user_id": request.get(USER_ID),
                }
            ),
        )


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
