"""Finalize, sign, amend and follow up the agreed plan, through the real app's REST API."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import func, select

from server.errors import Conflict
from server.models import AgreedPlan, AuditRecord, Board, Case
from server.notes.document import update_writing
from server.notes.signature import verify_file
from server.services import Services
from server.signing import keys_from_jwks

Auth = dict[str, dict[str, str]]
EXAMPLE = json.loads((Path(__file__).parent / "examples" / "thoracic.json").read_text())


async def _write(services: Services, case_id: int, content: dict[str, Any]) -> None:
    """Write ``content`` into the case's note as a client would."""
    async with services.db.read() as db:
        case = await db.get(Case, case_id)
        assert case is not None
        board = await db.get(Board, case.board_id)
        assert board is not None
    note = await services.notes.load(case, board)
    shape = services.notes.templates.shape(note.template)
    await services.notes.apply(note, update_writing(note.document.state(), shape, content), None)


async def _state(services: Services, case_id: int) -> tuple[str, int]:
    async with services.db.read() as db:
        case = await db.get(Case, case_id)
        assert case is not None
        plans = (
            await db.exec(
                select(func.count()).select_from(AgreedPlan).where(AgreedPlan.case_id == case_id)
            )
        ).one()
    return case.state, int(plans)


async def _audit_actions(services: Services) -> list[str]:
    async with services.db.read() as db:
        return list(await db.exec(select(AuditRecord.action).order_by(AuditRecord.id)))  # type: ignore[arg-type]


async def _finalized(
    client: TestClient[Any, Any], auth: Auth, services: Services, case_id: int
) -> dict[str, Any]:
    await _write(services, case_id, EXAMPLE)
    resp = await client.post(f"/api/cases/{case_id}/note/finalize", headers=auth["chair"])
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_only_the_chair_finalizes(
    client: TestClient[Any, Any], auth: Auth, services: Services, discussed: int
) -> None:
    await _write(services, discussed, EXAMPLE)
    for who in ("radiologist", "coordinator", "external"):
        resp = await client.post(f"/api/cases/{discussed}/note/finalize", headers=auth[who])
        assert resp.status == 403, who
    assert await _state(services, discussed) == ("ready", 0)


async def test_an_invalid_note_is_refused_naming_each_failing_field(
    client: TestClient[Any, Any], auth: Auth, services: Services, discussed: int
) -> None:
    bad = copy.deepcopy(EXAMPLE)
    del bad["staging"]["stage_group"]
    bad["recommendations"][2]["nct_number"] = "NCT123"
    bad["intent"] = "1234567"
    await _write(services, discussed, bad)
    resp = await client.post(f"/api/cases/{discussed}/note/finalize", headers=auth["chair"])
    assert resp.status == 422
    problem = await resp.json()
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(fields) == {"staging.stage_group", "recommendations.2.nct_number", "intent"}
    assert fields["staging.stage_group"] == "is required"
    assert "NCT" in fields["recommendations.2.nct_number"]
    assert fields["intent"] == "is not in the value set"
    assert await _state(services, discussed) == ("ready", 0)
    note = services.notes.opened(discussed)
    assert note is not None and note.status == "draft" and not note.frozen


async def test_a_case_never_discussed_cannot_be_finalized(
    client: TestClient[Any, Any], auth: Auth, services: Services, ids: dict[str, int]
) -> None:
    case_id = ids["ready_case"]  # ready, but on no session that has begun
    await _write(services, case_id, EXAMPLE)
    resp = await client.post(f"/api/cases/{case_id}/note/finalize", headers=auth["chair"])
    assert resp.status == 409
    assert (await resp.json())["errors"][0]["field"] == "session"
    assert await _state(services, case_id) == ("ready", 0)


async def test_finalizing_signs_the_plan_with_attendance_and_freezes_the_note(
    client: TestClient[Any, Any], auth: Auth, services: Services, discussed: int
) -> None:
    done = await _finalized(client, auth, services, discussed)
    assert done["version"] == 1 and done["hash"].startswith("sha256:") and done["kid"] == "HZ-1"
    assert await _state(services, discussed) == ("finalized", 1)

    plan = await (await client.get(f"/api/cases/{discussed}/plan", headers=auth["records"])).json()
    assert plan["verified"] is True and plan["problems"] == []
    current = plan["current"]
    assert current["note"] == EXAMPLE
    assert current["template"] == "thoracic" and current["previous"] is None
    names = {a["name"] for a in current["attendance"]}
    assert "Dr. Emily Carter" in names and len(names) == 5
    assert all("user_id" not in a for a in current["attendance"])
    assert current["quorum"]["missing"] == ["radiation_oncology"]
    assert current["finalized_by"] == {"name": "Dr. Zhang Wei (chair)", "institution": "HZ"}
    assert [f["status"] for f in plan["followup"]] == ["planned"] * 3
    assert "plan.finalize" in await _audit_actions(services)

    # The export verifies offline against the keys the server publishes.
    signed = await (
        await client.get(f"/api/cases/{discussed}/plan/signed", headers=auth["chair"])
    ).read()
    jwks = await (await client.get("/api/keys")).json()
    report = verify_file(signed, keys_from_jwks(jwks))
    assert report.ok, report.problems

    # The CRDT document is read-only now.
    note = services.notes.opened(discussed)
    assert note is not None and note.readonly
    with pytest.raises(Conflict, match="finalized and read-only"):
        await services.notes.apply(note, b"\x00\x00", None)
    again = await client.post(f"/api/cases/{discussed}/note/finalize", headers=auth["chair"])
    assert again.status == 409


async def test_an_amendment_needs_a_reason_and_signs_a_chained_version_2(
    client: TestClient[Any, Any], auth: Auth, services: Services, discussed: int
) -> None:
    first = await _finalized(client, auth, services, discussed)
    for reason in ("", "   "):
        resp = await client.post(
            f"/api/cases/{discussed}/plan/amendments",
            headers=auth["chair"],
            json={"reason": reason},
        )
        assert resp.status == 422, reason
        assert (await resp.json())["errors"][0]["field"] == "reason"
    resp = await client.post(
        f"/api/cases/{discussed}/plan/amendments", headers=auth["chair"], json={}
    )
    assert resp.status == 422
    note = services.notes.opened(discussed)
    assert note is not None and note.status == "finalized"
    resp = await client.post(
        f"/api/cases/{discussed}/plan/amendments",
        headers=auth["surgeon"],
        json={"reason": "not the chair"},
    )
    assert resp.status == 403

    why = "Pathology revised: N2 disease on the resection specimen"
    resp = await client.post(
        f"/api/cases/{discussed}/plan/amendments", headers=auth["chair"], json={"reason": why}
    )
    assert resp.status == 200, await resp.text()
    assert note.status == "amending" and not note.readonly
    shape = services.notes.templates.shape(note.template)
    fix = update_writing(note.document.state(), shape, {"staging": {"prefix": "p", "n": "N2"}})
    await services.notes.apply(note, fix, None)
    resp = await client.post(f"/api/cases/{discussed}/note/finalize", headers=auth["chair"])
    assert resp.status == 200, await resp.text()
    second = await resp.json()
    assert second["version"] == 2

    plan = await (await client.get(f"/api/cases/{discussed}/plan", headers=auth["observer"])).json()
    versions = plan["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["previous_hash"] == first["hash"] == versions[0]["hash"]
    assert versions[1]["amendment_reason"] == why
    assert plan["current"]["note"]["staging"]["n"] == "N2"
    assert plan["verified"] is True
    signed = await (
        await client.get(f"/api/cases/{discussed}/plan/signed", headers=auth["chair"])
    ).read()
    report = verify_file(signed, keys_from_jwks(await (await client.get("/api/keys")).json()))
    assert report.ok and report.versions == 2 and report.chained
    actions = await _audit_actions(services)
    assert {"plan.finalize", "plan.amendment.open", "plan.amend", "plan.export"} <= set(actions)


async def test_follow_up_closes_the_case_when_every_recommendation_is_settled(
    client: TestClient[Any, Any], auth: Auth, services: Services, discussed: int
) -> None:
    await _finalized(client, auth, services, discussed)
    base = f"/api/cases/{discussed}/plan/followup"
    coord = auth["coordinator"]
    bad = [
        (1, {"status": "not_done"}, 422, "reason"),
        (1, {"status": "not_done", "reason": "bored"}, 422, "reason"),
        (1, {"status": "done", "reason": "other"}, 422, "reason"),
        (1, {"status": "maybe"}, 422, "status"),
        (9, {"status": "done"}, 404, "rank"),
    ]
    for rank, body, status, field in bad:
        resp = await client.put(f"{base}/{rank}", headers=coord, json=body)
        assert resp.status == status, body
        assert (await resp.json())["errors"][0]["field"] == field
    assert (
        await client.put(f"{base}/1", headers=auth["chair"], json={"status": "done"})
    ).status == 403
    assert await _state(services, discussed) == ("finalized", 1)

    await client.put(f"{base}/1", headers=coord, json={"status": "done"})
    await client.put(f"{base}/2", headers=coord, json={"status": "done", "comment": "4 cycles"})
    resp = await client.put(
        f"{base}/3", headers=coord, json={"status": "not_done", "reason": "patient_choice"}
    )
    plan = await resp.json()
    assert plan["state"] == "closed"
    assert [(f["status"], f["reason"]) for f in plan["followup"]] == [
        ("done", None),
        ("done", None),
        ("not_done", "patient_choice"),
    ]
    assert plan["followup"][1]["comment"] == "4 cycles"
    resp = await client.put(f"{base}/3", headers=coord, json={"status": "planned"})
    assert (await resp.json())["state"] == "finalized"
    assert (await _audit_actions(services)).count("plan.followup") == 4


def _database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("eboard.sqlite3*"))


async def test_note_content_is_encrypted_at_rest(
    client: TestClient[Any, Any], auth: Auth, services: Services, discussed: int, data_dir: Path
) -> None:
    await _finalized(client, auth, services, discussed)
    stored = _database_bytes(data_dir)
    assert stored, "the SQLite files are in the data dir"
    for secret in ("systematic mediastinal", "Lung function allows", "NCT01234567"):
        assert secret.encode() not in stored, secret


async def test_the_demo_plan_is_finalized_and_verifies(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int]
) -> None:
    plan = await (
        await client.get(f"/api/cases/{ids['plan_case']}/plan", headers=auth["records"])
    ).json()
    assert plan["verified"] is True
    assert plan["current"]["case"] == {"number": "DEMO-0001", "institution": "HZ"}
    assert plan["state"] == "finalized"


async def test_a_board_chooses_its_template_else_its_tumor_site_decides(
    client: TestClient[Any, Any], auth: Auth, services: Services
) -> None:
    board = {
        "name": "Upper GI MDT",
        "tumor_site": "colorectal",
        "timezone": "Asia/Shanghai",
        "rrule": "FREQ=WEEKLY;BYDAY=TH",
        "start_time": "08:00",
    }
    by_site = await (
        await client.post("/api/boards", json=board, headers=auth["coordinator"])
    ).json()
    chosen = await client.post(
        "/api/boards", json={**board, "note_template": "generic"}, headers=auth["coordinator"]
    )
    assert chosen.status == 201, await chosen.text()
    assert by_site["note_template"] is None and (await chosen.json())["note_template"] == "generic"
    async with services.db.read() as db:
        site_board = await db.get(Board, by_site["id"])
        chosen_board = await db.get(Board, (await chosen.json())["id"])
    assert site_board is not None and chosen_board is not None
    assert services.notes.template_of(site_board) == "colorectal"
    assert services.notes.template_of(chosen_board) == "generic"
