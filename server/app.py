"""create_app: wires settings, services, routes and the built client into one aiohttp app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web
from sqlmodel import select

from media import EventSink, IceConfig, IceServer, LocalSfu, Sfu
from media.worker import WorkerSfu

from .api import (
    auth,
    boards,
    case_imaging,
    cases,
    imaging,
    invitations,
    keys,
    notes,
    people,
    records,
    sessions,
    system,
)
from .api.openapi import ROUTES
from .api.routing import RouteTable
from .config import Settings
from .contract import EventContract
from .imaging import dicomweb
from .imaging.dicomweb import FRAMES, METADATA, TRANSCODER, MetadataCache
from .imaging.frames import FrameIndex
from .imaging.transcode import Transcoder
from .live import ICE
from .metrics import METRICS, Metrics
from .middlewares import (
    compression_middleware,
    error_middleware,
    headers_middleware,
    observe_middleware,
    pacing_middleware,
)
from .models import Institution
from .packet import MAX_FRAME_BYTES, BoundedPacket
from .records.bulk import BulkExports
from .services import SERVICES, Services
from .signalling import Signalling

__all__ = ["create_app", "route_table", "SIGNALLING", "SFU"]

SIGNALLING = web.AppKey("signalling", Signalling)
SFU = web.AppKey("sfu", Sfu)

log = logging.getLogger(__name__)

_CLIENT_MISSING = (
    "<!doctype html><title>eBoard</title><p>The browser client is not built. "
    "Run <code>make run</code> (or <code>cd client && npm ci && npm run build</code>).</p>"
)


def route_table() -> RouteTable:
    table = RouteTable()
    for module in (system, auth, people, boards, sessions, cases, invitations):
        table.extend(module.routes)
    table.extend(case_imaging.routes)
    table.extend(imaging.routes)
    table.extend(notes.routes)
    table.extend(records.routes)
    table.extend(keys.routes)
    table.extend(dicomweb.routes)
    return table


SfuFactory = Callable[[EventSink, list[IceServer]], Sfu]


def create_app(settings: Settings, *, sfu_factory: SfuFactory | None = None) -> web.Application:
    app = web.Application(
        middlewares=[
            observe_middleware,
            headers_middleware(settings),
            compression_middleware,
            error_middleware,
            pacing_middleware,
        ],
        client_max_size=settings.max_upload_bytes + 64 * 1024,
    )
    services = Services.build(settings)
    app[SERVICES] = services
    app[METRICS] = Metrics()
    app[METADATA] = MetadataCache()
    app[FRAMES] = FrameIndex.watching(services.db.engine)
    app[TRANSCODER] = Transcoder(services.dicom)
    app[records.EXPORTS] = BulkExports(settings.data_dir / "exports")
    table = route_table()
    app[ROUTES] = table
    table.wire(app)
    if sfu_factory is None:
        sfu_factory = partial(
            WorkerSfu if settings.media_worker else LocalSfu, last_n=settings.last_n
        )
    _wire_signalling(app, services, sfu_factory)
    _wire_client(app, settings.client_dir)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_signalling_ctx)
    return app


def _wire_signalling(app: web.Application, services: Services, sfu_factory: SfuFactory) -> None:
    settings = services.settings
    ice = IceConfig(settings.stun_urls, settings.turn_urls, settings.turn_secret)
    relay: list[Signalling] = []
    sfu = sfu_factory(lambda event: relay[0].on_media_event(event), ice.servers_for("sfu"))
    signalling = Signalling(services, sfu, EventContract(), ice)
    relay.append(signalling)
    app[ICE] = ice
    # Websocket only: no long-polling, so no sticky sessions are needed behind a balancer.
    # A browser's connection from a page of another site carries the cookie too: only eBoard's
    # own origin is let in, before the namespace's connect runs (no Origin: not a browser).
    server = socketio.AsyncServer(
        async_mode="aiohttp",
        transports=["websocket"],
        cors_allowed_origins=partial(_own_origin, settings),
        # Frames up to this size are read and answered by the contract (the largest valid
        # event is a 171 KiB note update); a larger frame is refused by aiohttp from its header,
        # before any of it is buffered, and the connection closed with 1009 (message too big).
        max_http_buffer_size=MAX_FRAME_BYTES,
        serializer=BoundedPacket,
    )
    server.register_namespace(signalling)
    server.attach(app)

    app[SIGNALLING] = signalling
    app[SFU] = sfu


def _own_origin(settings: Settings, origin: str, environ: dict[str, Any]) -> bool:
    return settings.accepts_origin(origin, str(environ.get("HTTP_HOST", "")))


async def _signalling_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    # The SFU first, so its last events still reach signalling, which then drains its tasks
    # while the database is still open.
    await app[SFU].close()
    await app[SIGNALLING].close()


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    db = services.db
    await db.migrate()
    await services.dicom.seal_plain(db)  # imaging stored before it was sealed at rest
    # Each institution's signing key exists from the first run, so /api/keys publishes it
    # before the first plan is signed.
    async with db.read() as session:
        for code in await session.exec(select(Institution.code)):
            services.signing.ensure(code)
    yield
    await app[records.EXPORTS].close()
    await services.notes.close()
    await services.renderer.close()
    await db.close()


async def _cache_assets(request: web.Request, response: web.StreamResponse) -> None:
    """The client's build names each asset after its content, so a name never changes meaning:
    a returning user's browser asks for none of them again. Without this it revalidated each (a
    round trip apiece) or, past its heuristic freshness, downloaded ~6 MB again: 20 s over a
    2 Mbit/s link, the viewer's worker and codecs in a board's first seconds. Set when the
    status is final (a static file's is decided as it is sent) and never on an error: a 404
    kept for a year would outlive the deploy that fixes it."""
    if request.path.startswith("/assets/") and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"


def _wire_client(app: web.Application, client_dir: Path) -> None:
    index = client_dir / "index.html"

    async def serve_index(_: web.Request) -> web.StreamResponse:
        if not index.exists():
            return web.Response(text=_CLIENT_MISSING, content_type="text/html", status=503)
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", serve_index)
    assets = client_dir / "assets"
    if assets.is_dir():
        app.router.add_static("/assets", assets)
        app.on_response_prepare.append(_cache_assets)
    else:
        log.warning("Client(%s) not built: only the API is served", client_dir)
