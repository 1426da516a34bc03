"""Middlewares: problem+json errors, structured request logs, metrics, security headers, gzip
for JSON replies, and paced image replies."""

from __future__ import annotations

import json
import logging
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from aiohttp.web_response import ContentCoding

from .config import Settings
from .errors import EboardError, TooMany
from .metrics import METRICS

__all__ = [
    "USER_ID",
    "problem_response",
    "error_middleware",
    "observe_middleware",
    "headers_middleware",
    "KNOWN_METHODS",
    "content_security_policy",
    "compression_middleware",
    "pacing_middleware",
    "PACE_HEADER",
    "COMPRESS_BYTES",
]

log = logging.getLogger("eboard.requests")
errlog = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The methods any route answers; any other (TRACE, made-up ones) is 405 on every path.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Where patient data can be in a response: never kept by a browser or a proxy.
_NO_STORE = ("/api/", "/dicom-web/", "/metrics")

# JSON replies at least this long are gzipped for a client that accepts it (a series' DICOM
# JSON is hundreds of kilobytes and shrinks about tenfold; a short reply is not worth it).
COMPRESS_BYTES = 1024
_COMPRESSED_TYPES = frozenset(
    {"application/json", "application/dicom+json", "application/problem+json"}
)

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


def _problem_path(path: str) -> bool:
    return path.startswith(("/api/", "/dicom-web/")) or path == "/metrics"


def _allowed_methods(request: web.Request) -> set[str]:
    """The methods the requested path answers (none when it has no route)."""
    exc = getattr(request.match_info, "http_exception", None)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return set(exc.allowed_methods)
    resource = request.match_info.route.resource
    if exc is not None or resource is None:
        return set()
    return {route.method for route in resource if route.method in KNOWN_METHODS}


def _not_allowed(request: web.Request, allowed: set[str]) -> web.StreamResponse:
    allow = ", ".join(sorted(allowed))
    detail = f"{request.method[:20]} is not answered here" + (f"; use {allow}" if allow else "")
    if _problem_path(request.path):
        response = problem_response(405, "Method not allowed", detail)
    else:
        response = web.Response(status=405, text=detail)
    response.headers["Allow"] = allow
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in KNOWN_METHODS:
        return _not_allowed(request, _allowed_methods(request))
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
    except web.HTTPMethodNotAllowed as exc:
        return _not_allowed(request, set(exc.allowed_methods))
    except web.HTTPException as exc:
        if exc.status >= 400 and _problem_path(request.path):
            detail = (
                f"no route {request.method} {request.path}" if exc.status == 404 else exc.reason
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


def content_security_policy(host: str) -> str:
    """The client's policy: its own scripts (and the codecs' WebAssembly), workers, styles and
    connections (the API and socket.io's websocket); no inline script, no framing."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "worker-src 'self' blob:",
            "style-src 'self'",
            # Cornerstone's measurement labels set a style attribute on SVG text; attributes
            # cannot hold selectors or rules, and what they load is held to img-src.
            "style-src-attr 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def headers_middleware(settings: Settings) -> Middleware:
    """Security headers on every response, errors included; HSTS when serving TLS."""

    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # e.g. a missing static file
            _secure(request, exc.headers, settings)
            raise
        _secure(request, response.headers, settings)
        return response

    return headers


def _secure(request: web.Request, headers: MutableMapping[str, str], settings: Settings) -> None:
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Content-Security-Policy", content_security_policy(request.host))
    if settings.tls_enabled:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.path.startswith(_NO_STORE):
        headers["Cache-Control"] = "no-store"


@web.middleware
async def compression_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """gzip a JSON reply (``Response`` with its body in memory) when the client accepts gzip:
    aiohttp compresses the whole body (in a thread when large) and sets Content-Length to the
    compressed size. Streamed replies (frames, files) are left alone: they are compressed
    already, or pixel data that gzip hardly shrinks."""
    response = await handler(request)
    if (
        isinstance(response, web.Response)
        and not response.prepared
        and response.content_type in _COMPRESSED_TYPES
        and isinstance(response.body, bytes)
        and len(response.body) >= COMPRESS_BYTES
        and hdrs.CONTENT_ENCODING not in response.headers
    ):
        response.headers.add(hdrs.VARY, hdrs.ACCEPT_ENCODING)
        if _accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, "")):
            response.enable_compression(ContentCoding.gzip)
    return response


def _accepts_gzip(header: str) -> bool:
    for item in header.lower().split(",")[:20]:
        coding, _, params = item.partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


# A viewer prefetching images over a thin link names the rate it wants them at (bit/s): the
# kernel then paces the reply's TCP segments at that rate (Linux's SO_MAX_PACING_RATE, which
# also turns on TCP's own pacing) instead of sending each window in a burst. A burst of a
# 200 KB frame fills a thin link's queue and drops the board's video and audio with it; the
# browser's own request pacing only evens out the average. The connection closes after a paced
# reply: TCP keeps pacing a connection slowly for a while after the cap is lifted (seen on
# Linux 6.18: the next reply on it took as long), and no other request may inherit that.
PACE_HEADER = "X-Eboard-Pace"
PACE_MIN_BPS = 64_000
PACE_MAX_BPS = 10_000_000_000
_SO_MAX_PACING_RATE = getattr(socket, "SO_MAX_PACING_RATE", 47)  # Linux's number


@web.middleware
async def pacing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Pace a ``/dicom-web/`` reply at the ``X-Eboard-Pace`` rate; a value that is not a
    whole number of bit/s in range is refused (400, naming the header)."""
    text = request.headers.get(PACE_HEADER)
    if text is None or not request.path.startswith("/dicom-web/"):
        return await handler(request)
    bps = int(text) if len(text) <= 12 and text.isascii() and text.isdigit() else -1
    if not PACE_MIN_BPS <= bps <= PACE_MAX_BPS:
        return problem_response(
            400,
            "Bad pace",
            f"{PACE_HEADER} must be a whole number of bit/s from {PACE_MIN_BPS} to "
            f"{PACE_MAX_BPS}, not {text[:40]!r}",
            [{"field": PACE_HEADER, "message": "not a rate in range"}],
        )
    _pace(request, min(bps // 8, 0xFFFFFFFE))
    response = await handler(request)
    response.force_close()
    return response


def _pace(request: web.Request, bytes_per_second: int) -> None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or not sys.platform.startswith("linux") or sock.family == socket.AF_UNIX:
        return
    try:
        # The kernel's u32 (a 64-bit value is taken too, but not by every kernel).
        sock.setsockopt(socket.SOL_SOCKET, _SO_MAX_PACING_RATE, struct.pack("=I", bytes_per_second))
    except OSError as exc:  # not a TCP socket, or a kernel without pacing: send unpaced
        errlog.debug("Pacing not set: %s", exc)
