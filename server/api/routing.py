"""RouteTable: every REST route with its roles, body and response models, in one place.

The table wires the routes into aiohttp, enforces authentication and roles before a handler
runs, parses bodies into pydantic models, gives each call one unit of work, and is the source
of the OpenAPI document and of the role matrix test.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..accounts import token_user
from ..db import AsyncSession
from ..errors import (
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from ..middlewares import USER_ID
from ..models import User
from ..scheduling import zone
from ..security import Role
from ..services import SERVICES, Services
from . import json_body

__all__ = ["Call", "Route", "RouteTable", "PUBLIC", "TOKEN_COOKIE", "is_id"]

TOKEN_COOKIE = "eboard_token"
PUBLIC: frozenset[Role] = frozenset()
# Methods that change nothing; every other one is refused to a page of another site.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# An id in a path: ASCII digits, and no more of them than the database's integers hold.
_ID = re.compile(r"[0-9]{1,18}")


def is_id(raw: str) -> bool:
    """Whether ``raw`` is a row id as a URL carries it: ASCII digits (``"³".isdigit()`` is true
    and ``int("³")`` fails) no larger than the biggest number a JSON body may hold (2^53)."""
    return _ID.fullmatch(raw) is not None and int(raw) <= json_body.MAX_NUMBER


@dataclass
class Call:
    """What a handler gets: the request, who asks, the parsed body and the unit of work."""

    request: web.Request
    services: Services
    session: AsyncSession
    user: User | None
    body: Any

    @property
    def me(self) -> User:
        assert self.user is not None, "route is authenticated"
        return self.user

    def int_param(self, name: str) -> int:
        raw = self.request.match_info[name]
        if not is_id(raw):
            raise NotFound(f"{name} {raw[:24]!r} is not an id")
        return int(raw)

    def int_query(self, name: str) -> int | None:
        """An id in the query string (None when absent); 422 naming it when it is not one."""
        raw = self.request.query.get(name)
        if raw is None:
            return None
        if not is_id(raw):
            raise Invalid.on(name, f"{raw[:24]!r} is not an id")
        return int(raw)

    async def audit(
        self,
        *,
        action: str,
        target_type: str,
        target_id: object,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit record for the logged-in user in this call's unit of work."""
        await self.services.audit.append(
            self.session,
            actor_id=self.me.id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
        )

    @property
    def viewer_tz(self) -> ZoneInfo:
        name = self.request.query.get("tz")
        if name:
            return zone(name, "tz")
        return zone(self.me.timezone) if self.user else ZoneInfo("UTC")


Handler = Callable[[Call], Awaitable[Any]]
# Reads the user record behind a verified token: (request, user id) -> the user, or None.
UserSource = Callable[[web.Request, int], Awaitable[User | None]]


# Fetch Metadata (every current browser sends it; scripts and tools do not): a request from a
# page of another site, or of a sibling subdomain.
_OTHER_SITES = ("cross-site", "same-site")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    roles: frozenset[Role]
    summary: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    writes: bool = False
    # Declared for the OpenAPI document: the query parameters the handler reads, the media
    # types of a non-JSON answer, and error statuses beyond those the route's shape implies.
    query: type[BaseModel] | None = None
    media_types: tuple[str, ...] = ()
    answers: tuple[int, ...] = ()
    tag: str = ""
    raw_body: str | None = None  # e.g. "multipart/form-data" for uploads
    # Where the user record comes from once the token is verified; None: read from the
    # database for each request (see dicomweb's frames for the one route that differs).
    users: UserSource | None = None
    # A GET with effects (a file made and audited): refused when a page of another site sends
    # the browser here (a link or an <img> carrying the session cookie).
    same_site: bool = False

    @property
    def public(self) -> bool:
        return not self.roles


@dataclass
class RouteTable:
    routes: list[Route] = field(default_factory=list)

    def add(
        self,
        method: str,
        path: str,
        *,
        roles: Iterable[Role],
        summary: str,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        writes: bool | None = None,
        query: type[BaseModel] | None = None,
        media_types: tuple[str, ...] = (),
        answers: tuple[int, ...] = (),
        tag: str = "",
        raw_body: str | None = None,
        users: UserSource | None = None,
        same_site: bool = False,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(
                Route(
                    method=method,
                    path=path,
                    handler=handler,
                    roles=frozenset(roles),
                    summary=summary,
                    body=body,
                    response=response,
                    status=status,
                    writes=(method != "GET") if writes is None else writes,
                    query=query,
                    media_types=media_types,
                    answers=answers,
                    tag=tag,
                    raw_body=raw_body,
                    users=users,
                    same_site=same_site,
                )
            )
            return handler

        return register

    def extend(self, other: RouteTable) -> None:
        self.routes.extend(other.routes)

    def wire(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, route.path, _endpoint(route))


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        user = None
        if route.same_site or route.method not in SAFE_METHODS:
            _refuse_other_sites(request, services)
        # Who asks is settled before the body is read: a caller who may not use the route
        # learns nothing of its schema, and no large body is parsed for them.
        if not route.public:
            user = await _authenticate(route, request, services)
            request[USER_ID] = user.id
        _check_content_type(route, request)
        body = await _parse_body(route, request)
        unit = services.db.write() if route.writes else services.db.read()
        async with unit as session:
            result = await route.handler(Call(request, services, session, user, body))
        return _respond(route, result)

    endpoint.__name__ = route.handler.__name__
    return endpoint


def _refuse_other_sites(request: web.Request, services: Services) -> None:
    """Refuse a browser that a page of another site sent here with eBoard's cookie.

    Browsers say where a request comes from (Fetch Metadata, and Origin on every POST);
    scripts and tools send neither and pass, as they carry no one's cookie by accident.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site in _OTHER_SITES:
        raise Forbidden(
            f"Sec-Fetch-Site is {site}: eBoard's own pages make this request, not another site's"
        )
    origin = request.headers.get("Origin")
    if origin is not None and not services.settings.accepts_origin(origin, request.host):
        raise Forbidden(
            f"Origin {origin[:100]!r} is not eBoard's: only its own pages make this request"
        )


def _check_content_type(route: Route, request: web.Request) -> None:
    """A JSON route reads only ``application/json`` (a form is never parsed as JSON); an
    upload route only its multipart type."""
    expected = route.raw_body or ("application/json" if route.body is not None else None)
    if expected is None or (route.raw_body is None and not request.body_exists):
        return
    if request.content_type != expected:
        raise UnsupportedMediaType.on(
            "Content-Type", f"send {expected}, not {request.content_type[:100]!r}"
        )


async def _authenticate(route: Route, request: web.Request, services: Services) -> User:
    """The logged-in user of a non-public route, who must hold one of its roles."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("log in first: no token was sent")
    users = partial(route.users, request) if route.users is not None else None
    user = await token_user(services, token, users)
    # The role comes from the user record, never from the token's claims.
    if Role(user.role) not in route.roles:
        raise Forbidden(f"role {user.role} may not {route.summary[0].lower()}{route.summary[1:]}")
    return user


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(TOKEN_COOKIE) or None


async def _parse_body(route: Route, request: web.Request) -> Any:
    if route.body is None:
        return None
    if (request.content_length or 0) > json_body.MAX_BYTES:  # refused before it is read
        raise TooLarge.on("body", f"a JSON body is at most {json_body.MAX_BYTES} bytes")
    data = json_body.load(await request.read())
    try:
        return route.body.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
            for err in exc.errors()
        ]
        first = errors[0]
        raise Invalid(f"{first.field}: {first.message}", errors) from exc


def _respond(route: Route, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=204)
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return web.json_response(result, status=route.status)
