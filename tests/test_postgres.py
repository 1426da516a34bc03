"""The same code on a real PostgreSQL server: migrations, the demo seed and a coordinator's day."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.demo import seed
from server.services import SERVICES

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb refuses to run as root; the Debian package's postgres user runs the cluster.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    assert (PG_BIN / "initdb").exists(), "PostgreSQL 15 is installed by `make test`"
    # Not under pytest's 0700 root-owned temp tree: the postgres user must reach it.
    root = Path(tempfile.mkdtemp(prefix="eboard-pg-"))
    data = root / "cluster"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "eboard", "--auth=trust"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-w",
                "start",
                "-l",
                str(root / "log"),
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"postgresql+asyncpg://eboard@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def pg_client(aiohttp_client: Any, postgres_url: str, tmp_path: Path) -> TestClient[Any, Any]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=postgres_url, client_dir=tmp_path / "no-client"
    )
    app: web.Application = create_app(settings)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def test_postgres_runs_migrations_demo_and_a_coordinators_day(
    pg_client: TestClient[Any, Any],
) -> None:
    services = pg_client.app[SERVICES]
    ids = await seed(services)
    login = await pg_client.post(
        "/api/login", json={"username": "coordinator", "password": "eboard-demo"}
    )
    assert login.status == 200
    board = await pg_client.post(
        "/api/boards?tz=Asia/Shanghai",
        json={
            "name": "Breast MDT",
            "tumor_site": "breast",
            "timezone": "America/Chicago",
            "rrule": "FREQ=WEEKLY;BYDAY=TU",
            "start_time": "07:30",
            "duration_minutes": 60,
        },
    )
    assert board.status == 201, await board.text()
    nxt = (await board.json())["next_session"]["start"]
    assert nxt["board"][11:16] == "07:30" and nxt["viewer"][11:16] in ("20:30", "21:30")

    sessions = await (await pg_client.get(f"/api/boards/{ids['board_id']}/sessions")).json()
    sid = sessions["items"][0]["id"]
    added = await pg_client.post(
        f"/api/sessions/{sid}/agenda", json={"case_id": ids["ready_case"], "timebox_minutes": 15}
    )
    assert added.status == 201, await added.text()
    refused = await pg_client.post(
        f"/api/sessions/{sid}/agenda",
        json={"case_id": ids["requested_case"], "timebox_minutes": 15},
    )
    assert refused.status == 422
    dup = await pg_client.post(
        "/api/cases",
        json={
            "board_id": ids["board_id"],
            "clinical_question": "Q",
            "summary_language": "en",
            "patient": {
                "name": "X",
                "mrn": "HZ00012345",
                "birth_date": "1950-01-01",
                "sex": "male",
            },
        },
    )
    assert dup.status == 409
    case = await (await pg_client.get(f"/api/cases/{ids['ready_case']}")).json()
    assert case["patient"]["name"] == "Wang Fang"
    audit = await pg_client.post(
        "/api/login", json={"username": "admin", "password": "eboard-demo"}
    )
    assert audit.status == 200
    chain = await (await pg_client.get("/api/audit/verify")).json()
    assert chain["intact"] is True and chain["records"] > 10
