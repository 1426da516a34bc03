"""Bulk export jobs of the records page over their life: zips removed on time with nobody
asking, a zip that cannot be made fails its job, each server process keeps its own folder."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import select

from server.api.records import EXPORTS
from server.models import AuditRecord
from server.records import bulk
from server.records.bulk import BulkExports
from server.services import Services

Client = TestClient[Any, Any]
Headers = dict[str, dict[str, str]]
TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()
WEEK = {"from": str(TODAY - timedelta(days=14)), "to": str(TODAY + timedelta(days=1))}


async def _start(client: Client, headers: dict[str, str]) -> str:
    resp = await client.post("/api/exports", json={**WEEK, "format": "json"}, headers=headers)
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["id"])


async def _finished(client: Client, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    for _ in range(300):
        job: dict[str, Any] = await (
            await client.get(f"/api/exports/{job_id}", headers=headers)
        ).json()
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError("the bulk export did not finish in 30 s")


async def test_a_finished_zip_is_removed_when_its_time_is_up_with_nobody_asking(
    client: Client, auth: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "KEEP_SECONDS", 0.2)
    records = auth["records"]
    job_id = await _start(client, records)
    assert (await _finished(client, records, job_id))["state"] == "done"
    path = client.app[EXPORTS]._jobs[job_id].path
    assert path is not None and path.exists()

    await asyncio.sleep(1.5)  # no request in between: the job's own timer removes it
    assert not path.exists()
    gone = await client.get(f"/api/exports/{job_id}", headers=records)
    assert gone.status == 404


async def test_a_zip_that_cannot_be_made_fails_its_job_and_exports_nothing(
    client: Client, auth: Headers, services: Services
) -> None:
    registry = client.app[EXPORTS]
    registry.folder.parent.mkdir(parents=True, exist_ok=True)
    registry.folder.write_bytes(b"")  # where the zips go is taken by a file
    records = auth["records"]
    job = await _finished(client, records, await _start(client, records))
    assert job["state"] == "failed" and "zip" in job["error"], job
    assert str(registry.root) not in job["error"]  # the reason, not the server's paths
    file = await client.get(f"/api/exports/{job['id']}/file", headers=records)
    assert file.status == 409 and "failed" in await file.text()
    async with services.db.read() as db:
        exports = await db.exec(select(AuditRecord).where(AuditRecord.action == "plan.export"))
        assert list(exports) == []
    registry.folder.unlink()


def test_each_process_purges_its_own_folder_and_only_long_abandoned_others(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    live = root / "other-host-4242"  # another server process, sharing the data directory
    live.mkdir(parents=True)
    (live / "job.zip").write_bytes(b"zip")
    crashed = root / "other-host-17"
    crashed.mkdir()
    (crashed / "job.zip").write_bytes(b"zip")
    long_ago = time.time() - bulk.KEEP_SECONDS * 3
    os.utime(crashed / "job.zip", (long_ago, long_ago))
    os.utime(crashed, (long_ago, long_ago))

    mine = BulkExports(root).folder
    mine.mkdir()
    (mine / "left.zip").write_bytes(b"zip")  # by this process's previous run (same pid)

    BulkExports(root)
    assert (live / "job.zip").exists()
    assert not crashed.exists()
    assert not mine.exists()
