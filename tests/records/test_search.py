"""The records search, bulk exports from the records page, and the board metrics (REST)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import stat
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient
from sqlmodel import col, select

from server.api.records import EXPORTS
from server.models import AuditRecord, BoardSession
from server.services import Services

Client = TestClient[Any, Any]
Headers = dict[str, dict[str, str]]
MRN = "HZ00054321"
# Days are the records officer's (Hangzhou's), not the machine's.
TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()
WEEK = {"from": str(TODAY - timedelta(days=14)), "to": str(TODAY + timedelta(days=1))}


async def _plan_hash(services: Services, case_id: int) -> str:
    async with services.db.read() as db:
        versions = await services.plans.versions(db, case_id)
    return str(versions[-1]["hash"])


async def _search(client: Client, headers: dict[str, str], **body: Any) -> tuple[int, Any]:
    resp = await client.post("/api/records/search", json=body, headers=headers)
    return resp.status, await resp.json()


async def _audit(services: Services, action: str) -> list[AuditRecord]:
    async with services.db.read() as db:
        rows = await db.exec(
            select(AuditRecord).where(AuditRecord.action == action).order_by(col(AuditRecord.id))
        )
        return list(rows)


async def test_search_finds_the_demo_plan_by_each_criterion(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    records = auth["records"]
    status, found = await _search(client, records, **WEEK)
    assert status == 200 and found["total"] == 1
    item = found["items"][0]
    assert item["case_id"] == ids["plan_case"] and item["case_number"] == "DEMO-0001"
    assert item["state"] == "finalized" and item["version"] == 1
    assert item["tumor_site"] == "thoracic" and item["recommendations"] >= 1
    assert item["finalized_by"] and item["session_start_at"]

    board = ids["board_id"]
    for criterion, hit, miss in [
        ("case_number", "0001", "0002"),
        ("case_number", "demo-0001", "DEMO_0001"),  # any case; _ and % are not wildcards
        ("case_number", "DEMO-0001", "%"),
        ("board_id", board, None),
        ("tumor_site", "thoracic", "breast"),
        ("state", "finalized", "closed"),
        ("mrn", MRN.lower(), "HZ00000000"),
    ]:
        status, found = await _search(client, records, **{criterion: hit})
        assert (status, found["total"]) == (200, 1), (criterion, found)
        if miss is not None:
            status, found = await _search(client, records, **{criterion: miss})
            assert (status, found["total"]) == (200, 0), (criterion, found)
    before = str(TODAY - timedelta(days=60))
    status, found = await _search(client, records, **{"from": before, "to": before})
    assert found["total"] == 0

    # An MRN search is on record, without the MRN.
    searches = await _audit(services, "records.search")
    assert len(searches) == 2
    assert MRN not in json.dumps([s.detail for s in searches])


async def test_bad_searches_name_the_field(client: Client, auth: Headers) -> None:
    records = auth["records"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"from": "2026-11-30", "to": "2026-11-01"}, 422, "to"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, 422, "to"),
        ({"from": "yesterday"}, 422, "from"),
        ({"state": "lost"}, 422, "state"),
        ({"limit": 0}, 422, "limit"),
        ({"offset": 10**12}, 422, "offset"),
        ({"board_id": 10**12}, 422, "board_id"),
        ({"to": "9999-12-31"}, 422, "to"),
        ({"board_id": 999999}, 404, "board"),
    ]
    for body, status, field in cases:
        got, answer = await _search(client, records, **body)
        assert got == status, (body, answer)
        assert field in json.dumps(answer), (body, answer)


async def test_roles_that_may_not_search(client: Client, auth: Headers) -> None:
    for user in ("chair", "radiologist", "observer", "external"):
        status, _ = await _search(client, auth[user], **WEEK)
        assert status == 403, user


async def _finished(client: Client, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    for _ in range(600):
        resp = await client.get(f"/api/exports/{job_id}", headers=headers)
        job: dict[str, Any] = await resp.json()
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError("the bulk export did not finish in 60 s")


async def test_a_bulk_export_runs_to_a_zip_with_a_manifest_each_plan_audited(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    records = auth["records"]
    resp = await client.post("/api/exports", json={**WEEK, "format": "hl7"}, headers=records)
    assert resp.status == 202, await resp.text()
    started = await resp.json()
    assert started["total"] == 1 and started["state"] == "running"

    job = await _finished(client, records, started["id"])
    assert job["state"] == "done" and job["done"] == 1 and job["failed"] == []
    # Another user may not see or fetch it.
    other = await client.get(f"/api/exports/{started['id']}", headers=auth["coordinator"])
    assert other.status == 404
    resp = await client.get(f"/api/exports/{started['id']}/file", headers=records)
    assert resp.status == 200 and resp.content_type == "application/zip"
    assert (
        f"eboard-plans-{WEEK['from']}-{WEEK['to']}-hl7.zip" in resp.headers["Content-Disposition"]
    )
    archive = zipfile.ZipFile(io.BytesIO(await resp.read()))
    assert sorted(archive.namelist()) == ["DEMO-0001-plan-v1.hl7", "manifest.json"]
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["files"][0]["case"] == "DEMO-0001" and manifest["format"] == "hl7"
    # What was asked for, in which zone its days are, and what each file holds.
    assert manifest["zone"] == "Asia/Shanghai" and manifest["audience"] == "home"
    assert manifest["media_type"] == "x-application/hl7-v2+er7"
    assert manifest["from"] == WEEK["from"] and manifest["created_at"].endswith("Z")
    message = archive.read("DEMO-0001-plan-v1.hl7")
    assert message.startswith(b"MSH|^~\\&|EBOARD|") and message.endswith(b"\r")
    assert manifest["files"][0]["sha256"] == hashlib.sha256(message).hexdigest()
    signed = await _plan_hash(services, ids["plan_case"])
    assert manifest["files"][0]["plan_hash"] == signed
    # Who took the zip away is on record.
    (download,) = await _audit(services, "export.download")
    assert download.target_id == started["id"] and download.detail["plans"] == 1

    exports = await _audit(services, "plan.export")
    assert [(e.detail["format"], e.detail["bulk"]) for e in exports] == [("hl7", started["id"])]

    # The zip names the patient: only the server's user may read it, and it goes with the server.
    registry = client.app[EXPORTS]
    path = registry._jobs[started["id"]].path
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await registry.close()
    assert not path.exists()


async def test_bad_bulk_exports_are_refused_and_start_nothing(
    client: Client, auth: Headers, services: Services
) -> None:
    records = auth["records"]
    before = str(TODAY - timedelta(days=60))
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**WEEK, "format": "docx"}, 422, "format"),
        ({"from": WEEK["to"], "to": WEEK["from"], "format": "pdf"}, 422, "to"),
        ({"from": "2020-01-01", "to": WEEK["to"], "format": "pdf"}, 422, "to"),
        ({"to": WEEK["to"], "format": "pdf"}, 422, "from"),
        ({"from": before, "to": before, "format": "pdf"}, 409, "no agreed plans"),
        ({**WEEK, "format": "pdf", "language": "de"}, 422, "language"),
    ]
    for body, status, words in cases:
        resp = await client.post("/api/exports", json=body, headers=records)
        assert resp.status == status, (body, await resp.text())
        assert words in await resp.text(), body
    assert client.app[EXPORTS]._jobs == {}
    assert await _audit(services, "plan.export") == []
    missing = await client.get("/api/exports/nope/file", headers=records)
    assert missing.status == 404


async def test_board_metrics_of_the_demo_board(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    resp = await client.get(
        f"/api/records/metrics?from={WEEK['from']}&to={WEEK['to']}", headers=auth["records"]
    )
    assert resp.status == 200, await resp.text()
    boards = {b["board_id"]: b for b in (await resp.json())["boards"]}
    demo = boards[ids["board_id"]]
    assert demo["sessions"] >= 1 and demo["cases"] >= 1
    assert demo["minutes_per_case"] is not None and demo["minutes_per_case"] > 0
    assert demo["plans"] == 1
    assert demo["quorum"]["total"] == 1 and demo["quorum"]["share"] in (0.0, 1.0)
    recs = demo["recommendations"]
    assert recs["total"] >= 1 and recs["planned"] == recs["total"]
    assert recs["share_implemented"] == 0.0
    assert demo["request_to_final_days"]["n"] == 1
    assert demo["request_to_final_days"]["median"] >= 0

    # A slot of the board's calendar that nobody joined is not a session it held.
    async with services.db.write() as db:
        start = datetime.now(UTC) - timedelta(days=2)
        db.add(
            BoardSession(
                board_id=ids["board_id"], start_at=start, end_at=start + timedelta(hours=1)
            )
        )
    resp = await client.get(
        f"/api/records/metrics?from={WEEK['from']}&to={WEEK['to']}", headers=auth["records"]
    )
    again = {b["board_id"]: b for b in (await resp.json())["boards"]}[ids["board_id"]]
    assert again["sessions"] == demo["sessions"]

    # Following up a recommendation moves the shares.
    put = await client.put(
        f"/api/cases/{ids['plan_case']}/plan/followup/1",
        json={"status": "not_done", "reason": "patient_choice"},
        headers=auth["coordinator"],
    )
    assert put.status == 200, await put.text()
    resp = await client.get("/api/records/metrics", headers=auth["records"])
    recs = {b["board_id"]: b for b in (await resp.json())["boards"]}[ids["board_id"]][
        "recommendations"
    ]
    assert recs["not_done"] == 1 and recs["not_done_by_reason"] == {"patient_choice": 1}

    for query, field in [
        ("from=2026-02-30", "from"),
        ("to=9999-12-31", "to"),  # no midnight of it Python can hold in an eastern zone
        ("from=0001-01-01", "from"),
        ("board_id=%C2%B2", "board_id"),  # "²" is a digit to str.isdigit, not an id
    ]:
        bad = await client.get(f"/api/records/metrics?{query}", headers=auth["records"])
        assert bad.status == 422 and field in await bad.text(), query
