"""The web boundary as an attacker tries it: other sites' pages, stolen or stale tokens,
password spraying, headers, and inputs that once got a 500."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func
from sqlmodel import select

from server.api.openapi import ROUTES
from server.app import create_app
from server.config import Settings
from server.models import AuditRecord, Board, BoardMember, RevokedToken, User
from server.ratelimit import LoginThrottle
from server.services import SERVICES

Auth = dict[str, dict[str, str]]
EVIL = "https://evil.example"


async def _count(client: TestClient[Any, Any], table: Any) -> int:
    async with client.app[SERVICES].db.read() as session:
        return int((await session.exec(select(func.count()).select_from(table))).one())


async def _user(client: TestClient[Any, Any], username: str) -> User:
    async with client.app[SERVICES].db.read() as session:
        user = (await session.exec(select(User).where(User.username == username))).one()
    return user


async def _login(client: TestClient[Any, Any], username: str) -> str:
    resp = await client.post("/api/login", json={"username": username, "password": "eboard-demo"})
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["token"])


NEW_BOARD = {
    "name": "Breast MDT",
    "tumor_site": "breast",
    "timezone": "Europe/Zurich",
    "rrule": "FREQ=WEEKLY;BYDAY=WE",
    "start_time": "12:00",
}


# --- Requests sent by another site's page ---------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": EVIL},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": EVIL},
        {"Origin": "null"},
    ],
    ids=["cross-site", "same-site", "foreign-origin", "null-origin"],
)
async def test_cross_site_post_with_only_the_cookie_is_refused_and_changes_nothing(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    await _login(client, "coordinator")  # the browser holds the cookie
    before = await _count(client, Board)
    resp = await client.post("/api/boards", json=NEW_BOARD, headers=headers)
    assert resp.status == 403, await resp.text()
    assert resp.content_type == "application/problem+json"
    detail = (await resp.json())["detail"]
    assert "another site" in detail or "not eBoard's" in detail
    assert await _count(client, Board) == before


async def test_eboards_own_page_and_scripts_may_post(client: TestClient[Any, Any]) -> None:
    await _login(client, "coordinator")
    own = f"http://{client.host}:{client.port}"
    page = await client.post(
        "/api/boards", json=NEW_BOARD, headers={"Origin": own, "Sec-Fetch-Site": "same-origin"}
    )
    assert page.status == 201, await page.text()
    script = await client.post("/api/boards", json={**NEW_BOARD, "name": "Script MDT"})
    assert script.status == 201, await script.text()


async def test_the_public_url_is_the_only_origin_when_it_is_set(
    aiohttp_client: Any, settings: Settings
) -> None:
    public = Settings(**{**settings.__dict__, "public_url": "https://board.hospital.example"})
    client = await aiohttp_client(create_app(public))
    bearer = {"Authorization": f"Bearer {await _login(client, 'coordinator')}"}  # cookie: https
    own_host = f"http://{client.host}:{client.port}"
    refused = await client.post(
        "/api/boards", json=NEW_BOARD, headers={**bearer, "Origin": own_host}
    )
    assert refused.status == 403
    allowed = await client.post(
        "/api/boards",
        json=NEW_BOARD,
        headers={**bearer, "Origin": "https://board.hospital.example"},
    )
    assert allowed.status == 201, await allowed.text()


async def test_every_state_changing_route_refuses_another_sites_page(
    client: TestClient[Any, Any],
) -> None:
    """Each route of the table, STOW and uploads included, before anything else runs."""
    table = client.app[ROUTES]
    checked = 0
    for route in table.routes:
        if route.method == "GET" and not route.same_site:
            continue
        path = route.path.replace("{", "").replace("}", "")  # any value: refused first
        resp = await client.request(
            route.method, path, headers={"Sec-Fetch-Site": "cross-site", "Origin": EVIL}
        )
        assert resp.status == 403, f"{route.method} {route.path}: {resp.status}"
        checked += 1
    assert checked > 30  # the whole table, not a vacuous loop


async def test_a_form_encoded_body_is_never_parsed_as_json(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    before = await _count(client, Board)
    resp = await client.post(
        "/api/boards",
        data=json.dumps(NEW_BOARD),
        headers={**auth["coordinator"], "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 415
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["errors"][0]["field"] == "Content-Type"
    plain = await client.post(
        "/api/boards",
        data=json.dumps(NEW_BOARD),
        headers={**auth["coordinator"], "Content-Type": "text/plain"},
    )
    assert plain.status == 415
    assert await _count(client, Board) == before


async def test_an_upload_route_takes_only_its_multipart_type(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int]
) -> None:
    resp = await client.post(
        f"/api/cases/{ids['ready_case']}/attachments", json={"file": "x"}, headers=auth["chair"]
    )
    assert resp.status == 415
    assert "multipart/form-data" in (await resp.json())["detail"]
    stow = await client.post(
        "/dicom-web/studies", data=b"x", headers={**auth["chair"], "Content-Type": "text/plain"}
    )
    assert stow.status == 415


# --- socket.io from another site's page -----------------------------------------------------


async def _socket(
    server: TestServer, cookie: str, origin: str | None, refusals: list[Any] | None = None
) -> socketio.AsyncClient:
    sio = socketio.AsyncClient(reconnection=False)
    if refusals is not None:
        sio.on("connect_error", refusals.append, namespace="/board")
    headers = {"Cookie": f"eboard_token={cookie}"}
    if origin:
        headers["Origin"] = origin
    await sio.connect(
        str(server.make_url("/")), namespaces=["/board"], headers=headers, transports=["websocket"]
    )
    return sio


async def _server_login(server: TestServer, username: str) -> str:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            server.make_url("/api/login"),
            json={"username": username, "password": "eboard-demo"},
        )
        assert resp.status == 200
        return str((await resp.json())["token"])


async def test_a_foreign_origin_websocket_with_the_cookie_is_refused(
    server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "engineio.server")
    token = await _server_login(server, "chair")
    refusals: list[Any] = []
    # Refused by the transport, before the namespace's connect (and its token check) runs:
    # no refusal of the namespace's own reaches the client.
    with pytest.raises(socketio.exceptions.ConnectionError, match="^Connection error$"):
        await _socket(server, token, EVIL, refusals)
    assert refusals == ["Connection error"]
    assert f"{EVIL} is not an accepted origin" in caplog.text
    own = await _socket(server, token, f"http://{server.host}:{server.port}")
    assert own.connected  # the same cookie from eBoard's own page gets in
    await own.disconnect()


# --- Tokens that must not outlive logout or a change of the user ----------------------------


async def test_logout_revokes_the_token_for_rest_and_socket_io(server: TestServer) -> None:
    token = await _server_login(server, "chair")
    bearer = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        assert (await http.get(server.make_url("/api/me"), headers=bearer)).status == 200
        out = await http.post(server.make_url("/api/logout"), headers=bearer)
        assert out.status == 204
        after = await http.get(server.make_url("/api/me"), headers=bearer)
        assert after.status == 401
        assert "revoked" in (await after.json())["detail"]
        services = server.app[SERVICES]
        async with services.db.read() as session:
            rows = list(await session.exec(select(RevokedToken)))
        assert len(rows) == 1 and rows[0].expires_at.timestamp() > 0
    refusals: list[Any] = []
    with pytest.raises(socketio.exceptions.ConnectionError, match="namespaces failed"):
        await _socket(server, token, None, refusals)
    assert "revoked" in str(refusals)


async def test_revocations_past_their_tokens_expiry_are_purged(
    client: TestClient[Any, Any],
) -> None:
    services = client.app[SERVICES]
    chair = await _user(client, "chair")
    old, _ = services.tokens.issue("access", str(chair.id), -60, role="chair")
    fresh, _ = services.tokens.issue("access", str(chair.id), 600, role="chair")
    for token in (old, fresh):
        async with services.db.write() as session:
            claims = services.tokens.verify("access", fresh) if token is fresh else None
            if claims is None:  # an expired token cannot be verified: record it by hand
                await services.revocations.revoke(
                    session, jti="expired-one", user_id=chair.id or 0, expires_at=1
                )
            else:
                await services.revocations.revoke(
                    session, jti=claims.token_id, user_id=chair.id or 0, expires_at=10**10
                )
    async with services.db.read() as session:
        left = [r.jti for r in await session.exec(select(RevokedToken))]
    assert "expired-one" not in left and len(left) == 1


@pytest.mark.parametrize(
    "change",
    [{"active": False}, {"role": "observer"}, {"password": "a-new-long-password"}],
    ids=["disabled", "role", "password"],
)
async def test_changing_a_user_revokes_their_tokens(
    client: TestClient[Any, Any], auth: Auth, change: dict[str, object]
) -> None:
    token = await _login(client, "radiologist")
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/me", headers=bearer)).status == 200
    user = await _user(client, "radiologist")
    resp = await client.patch(f"/api/users/{user.id}", json=change, headers=auth["admin"])
    assert resp.status == 200, await resp.text()
    refused = await client.get("/api/me", headers=bearer)
    assert refused.status == 401
    # The fixture's token, issued before the change, is refused too.
    assert (await client.get("/api/me", headers=auth["radiologist"])).status == 401
    async with client.app[SERVICES].db.read() as session:
        audit = (
            await session.exec(select(AuditRecord).where(AuditRecord.action == "user.update"))
        ).one()
    assert audit.target_id == str(user.id) and "a-new-long-password" not in json.dumps(audit.detail)
    if "password" in change:
        assert (await _login(client, "chair")) and (
            await client.post(
                "/api/login",
                json={"username": "radiologist", "password": "a-new-long-password"},
            )
        ).status == 200


@pytest.mark.parametrize(
    ("who", "change", "status", "field"),
    [
        ("admin", {"role": "overlord"}, 422, "role"),
        ("admin", {"password": "short"}, 422, "password"),
        ("admin", {"active": "maybe"}, 422, "active"),
        ("coordinator", {"active": False}, 403, None),
    ],
)
async def test_a_bad_user_change_is_refused_and_changes_nothing(
    client: TestClient[Any, Any],
    auth: Auth,
    who: str,
    change: dict[str, object],
    status: int,
    field: str | None,
) -> None:
    user = await _user(client, "radiologist")
    resp = await client.patch(f"/api/users/{user.id}", json=change, headers=auth[who])
    assert resp.status == status
    if field:
        assert (await resp.json())["errors"][0]["field"] == field
    after = await _user(client, "radiologist")
    assert (after.role, after.active, after.password_hash, after.token_generation) == (
        user.role,
        user.active,
        user.password_hash,
        user.token_generation,
    )
    assert (await client.get("/api/me", headers=auth["radiologist"])).status == 200


async def test_an_admin_may_not_disable_or_demote_themselves(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    admin = await _user(client, "admin")
    for change in ({"active": False}, {"role": "observer"}):
        resp = await client.patch(f"/api/users/{admin.id}", json=change, headers=auth["admin"])
        assert resp.status == 409
    assert (await client.get("/api/me", headers=auth["admin"])).status == 200


async def test_patching_a_user_that_does_not_exist_is_404(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    resp = await client.patch("/api/users/999999", json={"active": False}, headers=auth["admin"])
    assert resp.status == 404


@pytest.mark.parametrize("subject", ["chair", "1.5", "-1", "99999999999999999999999", ""])
async def test_a_token_whose_subject_is_not_an_id_is_401(
    client: TestClient[Any, Any], subject: str
) -> None:
    token, _ = client.app[SERVICES].tokens.issue("access", subject, 600, role="admin")
    resp = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"


# --- Password spraying ----------------------------------------------------------------------


def test_login_throttle_holds_an_address_spraying_usernames_and_everyone_past_the_circuit() -> None:
    now = [1000.0]
    throttle = LoginThrottle(
        window=900, per_pair=5, per_user=20, per_address=20, overall=50, clock=lambda: now[0]
    )
    # One person's typos count once against their address.
    for _ in range(4):
        throttle.failed("chair", "10.0.0.1")
    for n in range(18):
        assert throttle.wait(f"user{n}", "10.0.0.1") == 0
        throttle.failed(f"user{n}", "10.0.0.1")
    assert throttle.wait("anyone", "10.0.0.1") == 0  # 19 usernames so far
    throttle.failed("user18", "10.0.0.1")
    now[0] += 100
    assert throttle.wait("anyone", "10.0.0.1") == 800
    assert throttle.why("anyone", "10.0.0.1") == "address"
    assert throttle.wait("anyone", "10.0.0.2") == 0  # another address may
    # Spread over many addresses, failures open the overall circuit.
    for n in range(27):
        throttle.failed(f"other{n}", f"10.0.1.{n}")
    assert throttle.wait("anyone", "10.0.2.1") > 0
    assert throttle.why("anyone", "10.0.2.1") == "all"
    now[0] += 900
    assert throttle.wait("anyone", "10.0.0.1") == 0


async def test_one_password_tried_against_thirty_usernames_is_throttled(
    client: TestClient[Any, Any],
) -> None:
    statuses = []
    for n in range(30):
        resp = await client.post(
            "/api/login", json={"username": f"user{n}", "password": "Summer2026!"}
        )
        statuses.append(resp.status)
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    # From this address even a right password waits now.
    held = await client.post("/api/login", json={"username": "chair", "password": "eboard-demo"})
    assert held.status == 429 and 0 < int(held.headers["Retry-After"]) <= 900
    assert "from this address" in (await held.json())["detail"]
    async with client.app[SERVICES].db.read() as session:
        throttled = list(
            await session.exec(
                select(AuditRecord).where(
                    AuditRecord.action == "login.failed", AuditRecord.target_id == "chair"
                )
            )
        )
    assert throttled[-1].detail == {"throttled": "address"}


# --- Headers --------------------------------------------------------------------------------


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    built = tmp_path / "dist"
    (built / "assets").mkdir(parents=True)
    (built / "index.html").write_text('<!doctype html><script type="module" src="/assets/a.js">')
    (built / "assets" / "a.js").write_text("export {};")
    return built


async def test_the_client_is_served_under_a_content_security_policy(
    aiohttp_client: Any, settings: Settings, client_dir: Path
) -> None:
    client = await aiohttp_client(
        create_app(Settings(**{**settings.__dict__, "client_dir": client_dir}))
    )
    for path in ("/", "/assets/a.js"):
        resp = await client.get(path)
        assert resp.status == 200
        csp = resp.headers["Content-Security-Policy"]
        for directive in (
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
        ):
            assert directive in csp
        # No inline script or <style> element; only style attributes (Cornerstone's labels).
        directives = [d.strip() for d in csp.split(";")]
        assert [d for d in directives if "unsafe-inline" in d] == ["style-src-attr 'unsafe-inline'"]
        assert "unsafe-eval'" not in csp.replace("wasm-unsafe-eval'", "")
        assert "Strict-Transport-Security" not in resp.headers  # plain HTTP on loopback


async def test_hsts_when_serving_tls(aiohttp_client: Any, settings: Settings) -> None:
    tls = Settings(**{**settings.__dict__, "host": "0.0.0.0"})  # TLS by default off loopback
    assert tls.tls_enabled
    client = await aiohttp_client(create_app(tls))
    resp = await client.get("/api/health")
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"


async def test_responses_that_can_carry_patient_data_are_never_stored(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    for path in ("/api/me", "/dicom-web/studies", "/api/no-such-thing", "/metrics"):
        resp = await client.get(path, headers=auth["chair"])
        assert resp.headers["Cache-Control"] == "no-store", path


async def test_the_clients_hashed_assets_are_cached_for_good_and_the_page_is_not(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    client_dir = tmp_path / "client"
    (client_dir / "assets").mkdir(parents=True)
    (client_dir / "index.html").write_text("<!doctype html><title>eBoard</title>")
    (client_dir / "assets" / "index-AbC123.js").write_text("export {};")
    client = await aiohttp_client(
        create_app(Settings(**{**settings.__dict__, "client_dir": client_dir}))
    )
    asset = await client.get("/assets/index-AbC123.js")
    assert asset.status == 200
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    page = await client.get("/")
    assert page.headers["Cache-Control"] == "no-cache"  # names the assets of the latest build
    missing = await client.get("/assets/index-Zz9.js")
    assert missing.status == 404 and "immutable" not in missing.headers.get("Cache-Control", "")


async def test_metrics_only_to_this_hosts_scraper_and_admins(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    assert (await client.get("/metrics")).status == 200  # loopback, not forwarded
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    refused = await client.get("/metrics", headers=forwarded)
    assert refused.status == 403
    assert "admins" in (await refused.json())["detail"]
    chair = await client.get("/metrics", headers={**forwarded, **auth["chair"]})
    assert chair.status == 403
    admin = await client.get("/metrics", headers={**forwarded, **auth["admin"]})
    assert admin.status == 200


# --- Scope ----------------------------------------------------------------------------------


async def test_coordinators_list_only_their_institutions_users(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    coordinator = await _user(client, "coordinator")
    mine = (await (await client.get("/api/users", headers=auth["coordinator"])).json())["items"]
    everyone = (await (await client.get("/api/users", headers=auth["admin"])).json())["items"]
    assert {u["institution"]["id"] for u in mine} == {coordinator.institution_id}
    assert "external" in {u["username"] for u in everyone} - {u["username"] for u in mine}


# --- Inputs that once got a 500 or no answer ------------------------------------------------


@pytest.mark.parametrize("value", ["1e308", "99999999999999999999999", "9007199254740993"])
async def test_a_huge_integer_in_a_body_is_422_naming_the_field(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], value: str
) -> None:
    before = await _count(client, BoardMember)
    resp = await client.post(
        f"/api/boards/{ids['board_id']}/members",
        data=f'{{"user_id": {value}}}',
        headers={**auth["coordinator"], "Content-Type": "application/json"},
    )
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "user_id"
    assert await _count(client, BoardMember) == before


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_not_json(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], value: str
) -> None:
    resp = await client.post(
        f"/api/boards/{ids['board_id']}/members",
        data=f'{{"user_id": {value}}}',
        headers={**auth["coordinator"], "Content-Type": "application/json"},
    )
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    "raw", ["1e308", "99999999999999999999999", "9223372036854775808", "١٢", "²"]
)
async def test_a_huge_or_odd_path_id_is_404_naming_it(
    client: TestClient[Any, Any], auth: Auth, raw: str
) -> None:
    resp = await client.get(f"/api/sessions/{raw}", headers=auth["chair"])
    assert resp.status == 404, await resp.text()
    assert "session_id" in (await resp.json())["detail"]


@pytest.mark.parametrize(
    "body",
    ["[" * 500 + "]" * 500, '{"a":' * 500 + "1" + "}" * 500, "[" * 5000, '{"a":' * 3000],
    ids=["lists", "objects", "unclosed-lists", "unclosed-objects"],
)
async def test_json_nested_past_the_limit_is_422_naming_body(
    client: TestClient[Any, Any], auth: Auth, body: str
) -> None:
    resp = await client.post(
        "/api/boards",
        data=body,
        headers={**auth["coordinator"], "Content-Type": "application/json"},
    )
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "body"


async def test_brackets_inside_strings_do_not_count_as_nesting(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    resp = await client.post(
        "/api/boards", json={**NEW_BOARD, "name": "[[[{{{" * 30}, headers=auth["coordinator"]
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/api/me", "GET"),
        ("TRACE", "/", "GET, HEAD"),
        ("PROPFIND", "/api/boards", "GET, POST"),
        ("TRACE", "/api/no-such-route", ""),
        ("DELETE", "/api/health", "GET"),
    ],
)
async def test_an_unknown_or_unanswered_method_is_405_with_allow(
    client: TestClient[Any, Any], method: str, path: str, allow: str
) -> None:
    resp = await client.request(method, path)
    assert resp.status == 405
    assert resp.headers["Allow"] == allow
    if path.startswith("/api/"):
        assert resp.content_type == "application/problem+json"


def test_an_app_is_built_for_every_origin_setting(settings: Settings) -> None:
    # A public URL with a port, without one, and none: the origin rule is decided at start.
    for public in ("https://board.example:8443", "https://board.example", ""):
        app = create_app(Settings(**{**settings.__dict__, "public_url": public}))
        assert isinstance(app, web.Application)
        assert Settings(**{**settings.__dict__, "public_url": public}).accepts_origin(
            public or "http://127.0.0.1:8080", "127.0.0.1:8080"
        )


@pytest.mark.parametrize("raw", ["99999999999999999999999", "²", "1e308", "-1"])
async def test_a_huge_or_odd_query_id_is_422_naming_it(
    client: TestClient[Any, Any], auth: Auth, raw: str
) -> None:
    resp = await client.get("/api/cases", params={"board_id": raw}, headers=auth["chair"])
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "board_id"


# --- Key rotation and the schema ------------------------------------------------------------


def test_keys_rotate_is_audited_and_keeps_earlier_keys(data_dir: Path) -> None:
    from server.__main__ import main
    from server.keys import KeyRing

    before = KeyRing.load_or_create(data_dir)
    assert main(["keys", "rotate", "--data-dir", str(data_dir)]) == 0
    after = KeyRing.load_or_create(data_dir)
    assert after.active_field_key != before.active_field_key
    assert set(before.field_keys) < set(after.field_keys)
    with sqlite3.connect(data_dir / "eboard.sqlite3") as db:
        rows = db.execute(
            "SELECT target_id, detail FROM audit_record WHERE action = 'field_key.rotate'"
        ).fetchall()
    assert [r[0] for r in rows] == [after.active_field_key]
    assert main(["verify-audit", "--data-dir", str(data_dir)]) == 0  # the chain holds


def test_migration_0008_keeps_users_at_generation_zero(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, text

    from server.db import alembic_config

    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
        conn.execute(
            text("INSERT INTO institution (id, code, name, timezone) VALUES (1, 'HZ', 'H', 'UTC')")
        )
        conn.execute(
            text(
                "INSERT INTO user (id, username, display_name, email, password_hash, role, "
                "institution_id, timezone, locale, active, created_at) VALUES (1, 'u', 'U', '', "
                "'x', 'admin', 1, 'UTC', 'en', 1, '2026-01-01')"
            )
        )
        command.upgrade(cfg, "0008")
        assert conn.execute(text("SELECT token_generation FROM user")).scalar_one() == 0
        conn.execute(
            text(
                "INSERT INTO revoked_token (jti, user_id, expires_at) VALUES ('j', 1, '2026-01-01')"
            )
        )
        command.downgrade(cfg, "0007")
        assert conn.execute(text("SELECT username FROM user")).scalar_one() == "u"


async def test_a_json_body_over_a_mebibyte_is_413_and_changes_nothing(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    before = await _count(client, Board)
    huge = {**NEW_BOARD, "padding": ["x" * 1000] * 1100}
    resp = await client.post("/api/boards", json=huge, headers=auth["coordinator"])
    assert resp.status == 413
    assert (await resp.json())["errors"][0]["field"] == "body"
    assert await _count(client, Board) == before
