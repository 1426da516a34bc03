"""Logins, tokens, invitations, keys, settings, the audit chain and what reaches the logs."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.__main__ import main
from server.config import Settings
from server.errors import ConfigError
from server.models import BoardMember, User
from server.security import Tokens
from server.services import SERVICES

ROOT = Path(__file__).resolve().parent.parent


async def test_login_sets_httponly_cookie_that_authenticates(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/api/login", json={"username": "chair", "password": "eboard-demo"})
    assert resp.status == 200
    body = await resp.json()
    assert body["user"]["role"] == "chair" and body["token"]
    cookie = resp.headers["Set-Cookie"]
    assert "eboard_token=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    me = await client.get("/api/me")  # the test client keeps the cookie
    assert (await me.json())["username"] == "chair"
    bearer = await client.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert bearer.status == 200


@pytest.mark.parametrize("password", ["wrong-password", ""])
async def test_wrong_password_is_refused(client: TestClient[Any, Any], password: str) -> None:
    resp = await client.post("/api/login", json={"username": "chair", "password": password})
    assert resp.status in (401, 422)
    assert resp.content_type == "application/problem+json"
    assert "Set-Cookie" not in resp.headers


async def test_failed_login_is_audited(client: TestClient[Any, Any]) -> None:
    from server.models import AuditRecord

    resp = await client.post("/api/login", json={"username": "chair", "password": "guess-guess"})
    assert resp.status == 401
    async with client.app[SERVICES].db.read() as session:
        rows = list(
            await session.exec(select(AuditRecord).where(AuditRecord.action == "login.failed"))
        )
    assert [(r.target_id, r.actor_id) for r in rows] == [("chair", None)]


async def test_repeated_failed_logins_are_throttled_for_that_user(
    client: TestClient[Any, Any],
) -> None:
    from server.models import AuditRecord

    def attempt(username: str, password: str) -> Any:
        return client.post("/api/login", json={"username": username, "password": password})

    for _ in range(5):
        assert (await attempt("chair", "guess-guess")).status == 401
    # Now even the right password waits: it is not checked at all.
    refused = await attempt("chair", "eboard-demo")
    assert refused.status == 429 and "Set-Cookie" not in refused.headers
    assert 0 < int(refused.headers["Retry-After"]) <= 900
    assert "too many failed logins for chair" in (await refused.json())["detail"]
    # Other users, from the same address, are not held up.
    assert (await attempt("radiologist", "eboard-demo")).status == 200
    async with client.app[SERVICES].db.read() as session:
        rows = list(
            await session.exec(select(AuditRecord).where(AuditRecord.action == "login.failed"))
        )
    assert len(rows) == 6 and rows[-1].detail == {"throttled": True}


def test_login_throttle_counts_per_user_and_address_within_its_window() -> None:
    from server.ratelimit import LoginThrottle

    now = [1000.0]
    throttle = LoginThrottle(window=900, per_pair=5, per_user=20, clock=lambda: now[0])
    for _ in range(5):
        assert throttle.wait("Chair", "10.0.0.1") == 0
        throttle.failed("Chair", "10.0.0.1")
        now[0] += 10
    assert throttle.wait("chair", "10.0.0.1") == 900 - 50  # names compare case-blind
    assert throttle.wait("chair", "10.0.0.2") == 0  # another address still may
    # Twenty failures from anywhere hold the user everywhere.
    for n in range(15):
        throttle.failed("chair", f"10.0.1.{n}")
    assert throttle.wait("chair", "10.0.0.3") > 0
    assert throttle.wait("radiologist", "10.0.0.1") == 0
    # Failures leave the window; a success forgets that user's.
    now[0] += 900
    assert throttle.wait("chair", "10.0.0.1") == 0
    throttle.failed("chair", "10.0.0.1")
    throttle.succeeded("chair", "10.0.0.1")
    for _ in range(4):  # with the one before the success, five would be one too many
        throttle.failed("chair", "10.0.0.1")
    assert throttle.wait("chair", "10.0.0.1") == 0


async def test_expired_token_is_refused(client: TestClient[Any, Any]) -> None:
    tokens = client.app[SERVICES].tokens
    token, _ = tokens.issue("access", "2", -10, role="coordinator")
    resp = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert (await resp.json())["detail"] == "token has expired"


async def test_tampered_token_is_refused(client: TestClient[Any, Any]) -> None:
    tokens = client.app[SERVICES].tokens
    token, _ = tokens.issue("access", "9", 3600, role="records")
    head, payload, sig = token.split(".")
    # Claim to be user 1 (admin) by swapping the payload of another token: signature fails.
    other, _ = tokens.issue("access", "1", 3600, role="admin")
    forged = ".".join([head, other.split(".")[1], sig])
    for bad in (forged, token[:-3] + "AAA", "not.a.token", "garbage"):
        resp = await client.get("/api/me", headers={"Authorization": f"Bearer {bad}"})
        assert resp.status == 401, bad
        assert "invalid" in (await resp.json())["detail"]


async def test_token_signed_with_another_key_is_refused(client: TestClient[Any, Any]) -> None:
    token, _ = Tokens(b"k" * 32).issue("access", "1", 3600, role="admin")
    resp = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


async def _invite(client: TestClient[Any, Any], auth: dict[str, dict[str, str]], board: int) -> str:
    resp = await client.post(
        f"/api/boards/{board}/invitations",
        headers=auth["coordinator"],
        json={"institution_id": 2, "specialty": "radiation_oncology", "email": "new@roc.example"},
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["url"].endswith(f"/#/join/{board}?token={body['token']}")
    return str(body["token"])


def _join(token: str, board_id: int, username: str = "dr.new") -> dict[str, Any]:
    return {
        "token": token,
        "board_id": board_id,
        "username": username,
        "password": "a-long-password",
        "display_name": "Dr. New",
    }


async def _users(client: TestClient[Any, Any]) -> int:
    async with client.app[SERVICES].db.read() as session:
        return int((await session.exec(select(func.count()).select_from(User))).one())


async def test_invitation_creates_external_member_once(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    token = await _invite(client, auth, ids["board_id"])
    shown = await (await client.get(f"/api/invitations/{token}")).json()
    assert shown["board_name"] == "Thoracic MDT"
    assert shown["institution_name"] == "Rochester Cancer Center"
    resp = await client.post("/api/invitations/accept", json=_join(token, ids["board_id"]))
    assert resp.status == 201, await resp.text()
    user = (await resp.json())["user"]
    assert user["role"] == "specialist" and user["institution"]["code"] == "ROC"
    async with client.app[SERVICES].db.read() as session:
        member = (
            await session.exec(select(BoardMember).where(BoardMember.user_id == user["id"]))
        ).one()
    assert member.board_id == ids["board_id"]
    before = await _users(client)
    again = await client.post(
        "/api/invitations/accept", json=_join(token, ids["board_id"], "dr.other")
    )
    assert again.status == 409
    assert await _users(client) == before


async def test_invitation_with_a_malformed_email_is_refused(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    resp = await client.post(
        f"/api/boards/{ids['board_id']}/invitations",
        headers=auth["coordinator"],
        json={"institution_id": 2, "specialty": "surgery", "email": "not-an-email"},
    )
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "email"


async def test_expired_tampered_and_wrong_board_invitations_change_nothing(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    board = ids["board_id"]
    token = await _invite(client, auth, board)
    other = await client.post(
        "/api/boards",
        headers=auth["coordinator"],
        json={
            "name": "Other",
            "tumor_site": "generic",
            "timezone": "UTC",
            "rrule": "FREQ=MONTHLY",
            "start_time": "12:00",
            "duration_minutes": 60,
        },
    )
    other_id = (await other.json())["id"]
    expired, _ = client.app[SERVICES].tokens.issue("invite", "nope", -5, board=board)
    before = await _users(client)
    cases = [
        (_join(token, other_id), 403, "another board"),
        (_join(token[:-4] + "AAAA", board), 401, "invalid"),
        (_join(expired, board), 401, "expired"),
        (_join(client.app[SERVICES].tokens.issue("access", "1", 60)[0], board), 401, "invalid"),
    ]
    for body, status, fragment in cases:
        resp = await client.post("/api/invitations/accept", json=body)
        assert resp.status == status, (body, await resp.text())
        assert fragment in (await resp.json())["detail"]
    assert await _users(client) == before
    shown = await client.get(f"/api/invitations/{token[:-4]}AAAA")
    assert shown.status == 401


def test_key_file_is_created_owner_only(tmp_path: Path) -> None:
    from server.keys import KeyRing

    ring = KeyRing.load_or_create(tmp_path / "d")
    assert (ring.path.stat().st_mode & 0o777) == 0o600
    rotated = ring.rotate()
    assert rotated.active_field_key == "k2" and set(rotated.field_keys) == {"k1", "k2"}
    ring.path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by its owner only"):
        KeyRing.load_or_create(tmp_path / "d")


def test_a_leftover_world_readable_temporary_key_file_does_not_leak_its_mode(
    tmp_path: Path,
) -> None:
    from server.keys import KeyRing

    ring = KeyRing.load_or_create(tmp_path / "d")
    # A crash left keys.tmp behind, readable by everyone; the next write must not reuse it.
    leftover = ring.path.with_suffix(".tmp")
    leftover.write_text("{}")
    leftover.chmod(0o644)
    rotated = ring.rotate()
    assert (rotated.path.stat().st_mode & 0o777) == 0o600
    assert not leftover.exists()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"port": 0}, "port"),
        ({"database_url": "mysql://x"}, "database-url"),
        ({"public_url": "board.example"}, "public-url"),
    ],
)
def test_bad_setting_fails_with_a_sentence_naming_it(
    tmp_path: Path, kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings(data_dir=tmp_path, **kwargs)


def test_cli_reports_bad_setting_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--data-dir", str(tmp_path), "--port", "eighty"])
    assert code == 2
    assert "port must be a number" in capsys.readouterr().err


async def test_audit_chain_verifies_and_detects_tampering(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    await client.get(f"/api/cases/{ids['ready_case']}", headers=auth["chair"])
    ok = await (await client.get("/api/audit/verify", headers=auth["admin"])).json()
    assert ok["intact"] is True and ok["records"] > 5
    settings = client.app[SERVICES].settings
    with sqlite3.connect(settings.data_dir / "eboard.sqlite3") as db:
        db.execute("UPDATE audit_record SET action = 'nothing' WHERE id = 3")
    broken = await (await client.get("/api/audit/verify", headers=auth["admin"])).json()
    assert broken["intact"] is False
    assert broken["breaks"] == [{"record_id": 3, "reason": "content does not match its hash"}]


def test_verify_audit_command_detects_a_deleted_record(data_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "server", "verify-audit", "--data-dir", str(data_dir)]
    good = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "audit chain intact" in good.stdout
    with sqlite3.connect(data_dir / "eboard.sqlite3") as db:
        db.execute("DELETE FROM audit_record WHERE id = 2")
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert bad.returncode == 1
    assert "audit record 3: prev_hash does not match" in bad.stdout


async def test_logs_never_carry_patient_identifiers(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    coord = auth["coordinator"]
    await client.post("/api/cases/lookup", json={"mrn": "HZ00012345"}, headers=coord)
    await client.get(f"/api/cases/{ids['ready_case']}", headers=coord)
    await client.post(
        "/api/cases",
        headers=coord,
        json={
            "board_id": ids["board_id"],
            "clinical_question": "Q",
            "summary_language": "en",
            "patient": {
                "name": "Ma Lin",
                "mrn": "HZ00012345",
                "birth_date": "1950-01-01",
                "sex": "male",
            },
        },
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert '"route": "/api/cases"' in text  # the request log ran
    for secret in ("HZ00012345", "Wang Fang", "Ma Lin", "1961-03-02", "1950-01-01"):
        assert secret not in text


def test_tls_is_on_by_default_outside_loopback_with_a_self_signed_certificate(
    tmp_path: Path,
) -> None:
    from server.tls import ssl_context

    local = Settings(data_dir=tmp_path, host="127.0.0.1")
    assert ssl_context(local) is None and local.effective_public_url.startswith("http://")
    public = Settings(data_dir=tmp_path, host="0.0.0.0")
    context = ssl_context(public)
    assert context is not None
    assert public.effective_public_url.startswith("https://") and public.cookie_secure
    key = tmp_path / "tls" / "key.pem"
    assert (key.stat().st_mode & 0o777) == 0o600
    proxied = Settings(data_dir=tmp_path, host="0.0.0.0", insecure_http=True)
    assert ssl_context(proxied) is None
    with pytest.raises(ConfigError, match="together"):
        Settings(data_dir=tmp_path, tls_cert=tmp_path / "tls" / "cert.pem")
