"""REST: logging in and out, and who I am."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, Field

from ..accounts import issue_access, login, logout, user_json
from ..errors import TooMany, Unauthenticated
from ..models import User
from .responses import LoginOut, UserOut
from .roles import EVERYONE
from .routing import PUBLIC, TOKEN_COOKIE, Call, RouteTable, bearer_token

routes = RouteTable()


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def set_token_cookie(call: Call, response: web.Response, token: str) -> None:
    settings = call.services.settings
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        httponly=True,
        samesite="Lax",
        path="/",
        max_age=settings.token_ttl_seconds,
        secure=settings.cookie_secure,
    )


async def issue_login(call: Call, user: User, status: int = 200) -> web.Response:
    """The login reply: a signed access token in the body and in an HttpOnly cookie."""
    token, exp = issue_access(call.services, user)
    body = {
        "token": token,
        "expires_at": datetime.fromtimestamp(exp, UTC).isoformat(),
        "user": await user_json(call.session, user),
    }
    response = web.json_response(body, status=status)
    set_token_cookie(call, response, token)
    return response


# Checking the password is slow by design, so it runs in a read unit; only the audit record
# takes the (serialised) write unit.
@routes.add(
    "POST",
    "/api/login",
    roles=PUBLIC,
    summary="Log in",
    body=LoginIn,
    tag="auth",
    writes=False,
    response=LoginOut,
    answers=(401, 429),
)
async def post_login(call: Call) -> web.Response:
    services, username = call.services, call.body.username
    address = call.request.remote or "?"
    wait = services.logins.wait(username, address)
    if wait:
        # Refused before the password is checked: guessing costs the guesser, not the server.
        why = services.logins.why(username, address)
        await _login_failed(call, {"throttled": True} if why == "user" else {"throttled": why})
        whose = {
            "user": f"for {username}",
            "address": "from this address",
            "all": "on this server",
        }[why]
        raise TooMany(
            f"too many failed logins {whose}; try again in {math.ceil(wait / 60)} min",
            retry_after=wait,
        )
    try:
        user = await login(call.session, services, username, call.body.password)
    except Unauthenticated:
        services.logins.failed(username, address)
        await _login_failed(call, {})
        raise
    services.logins.succeeded(username, address)
    async with call.services.db.write() as session:
        await call.services.audit.append(
            session, actor_id=user.id, action="login", target_type="user", target_id=user.id
        )
    return await issue_login(call, user)


async def _login_failed(call: Call, detail: dict[str, object]) -> None:
    async with call.services.db.write() as session:
        await call.services.audit.append(
            session,
            actor_id=None,
            action="login.failed",
            target_type="user",
            target_id=call.body.username,
            detail=detail or None,
        )


@routes.add(
    "POST", "/api/logout", roles=PUBLIC, summary="Log out", status=204, tag="auth", writes=False
)
async def post_logout(call: Call) -> web.Response:
    """Revoke the token sent (header or cookie) and clear the cookie; without a valid token
    there is nothing to revoke, and the answer is the same."""
    token = bearer_token(call.request)
    if token is not None:
        async with call.services.db.write() as session:
            claims = await logout(session, call.services, token)
            if claims is not None:
                await call.services.audit.append(
                    session,
                    actor_id=int(claims.subject),
                    action="logout",
                    target_type="user",
                    target_id=int(claims.subject),
                )
    response = web.Response(status=204)
    response.del_cookie(TOKEN_COOKIE, path="/")
    return response


@routes.add(
    "GET",
    "/api/me",
    roles=EVERYONE,
    summary="Show the logged-in user",
    tag="auth",
    response=UserOut,
)
async def get_me(call: Call) -> dict[str, object]:
    return await user_json(call.session, call.me)
