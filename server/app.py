"""create_app: wires settings, services, routes and the built client into one aiohttp app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from .api import auth, boards, cases, invitations, people, sessions, system
from .api.openapi import ROUTES
from .api.routing import RouteTable
from .config import Settings
from .metrics import METRICS, Metrics
from .middlewares import error_middleware, headers_middleware, observe_middleware
from .services import SERVICES, Services

__all__ = ["create_app", "route_table"]

log = logging.getLogger(__name__)

_CLIENT_MISSING = (
    "<!doctype html><title>eBoard</title><p>The browser client is not built. "
    "Run <code>make run</code> (or <code>cd client && npm ci && npm run build</code>).</p>"
)


def route_table() -> RouteTable:
    table = RouteTable()
    for module in (system, auth, people, boards, sessions, cases, invitations):
        table.extend(module.routes)
    return table


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[observe_middleware, headers_middleware, error_middleware],
        client_max_size=settings.max_upload_bytes + 64 * 1024,
    )
    services = Services.build(settings)
    app[SERVICES] = services
    app[METRICS] = Metrics()
    table = route_table()
    app[ROUTES] = table
    table.wire(app)
    _wire_client(app, settings.client_dir)
    app.cleanup_ctx.append(_database_ctx)
    return app


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    db = app[SERVICES].db
    await db.migrate()
    yield
    await db.close()


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
    else:
        log.warning("Client(%s) not built: only the API is served", client_dir)
