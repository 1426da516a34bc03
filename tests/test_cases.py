"""Case intake, workflow states, readiness, attachments and opinions through the real API."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.models import Attachment, AuditRecord, Case, Patient
from server.services import SERVICES

NEW_CASE = {
    "board_id": 1,
    "patient": {
        "name": "Qian Hui",
        "mrn": "HZ00055555",
        "birth_date": "1968-04-09",
        "sex": "female",
    },
    "clinical_question": "Resectable?",
    "clinical_summary": "Summary.",
    "summary_language": "en",
    "consent_external": True,
    "consent_date": "2026-11-01",
}


async def _counts(client: TestClient[Any, Any]) -> tuple[int, ...]:
    async with client.app[SERVICES].db.read() as session:
        out = []
        for table in (Case, Patient, Attachment):
            out.append((await session.exec(select(func.count()).select_from(table))).one())
    return tuple(out)


async def _new_case(
    client: TestClient[Any, Any], headers: dict[str, str], **over: Any
) -> dict[str, Any]:
    resp = await client.post("/api/cases", json={**NEW_CASE, **over}, headers=headers)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def _move(
    client: TestClient[Any, Any], headers: dict[str, str], case_id: int, to: str, **extra: Any
) -> Any:
    return await client.post(
        f"/api/cases/{case_id}/transitions", json={"to": to, **extra}, headers=headers
    )


async def test_case_walks_the_workflow_to_ready_once_its_checklist_passes(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]]
) -> None:
    coord = auth["coordinator"]
    case = await _new_case(client, coord)
    assert case["state"] == "requested"
    assert case["number"].startswith("HZ-") and case["number"].endswith("-0004")
    assert case["allowed_transitions"] == ["accepted", "rejected"]
    assert (await _move(client, coord, case["id"], "accepted")).status == 200
    assert (await _move(client, coord, case["id"], "in_preparation")).status == 200

    refused = await _move(client, coord, case["id"], "ready")
    assert refused.status == 422
    body = await refused.json()
    assert {e["field"] for e in body["errors"]} == {"imaging", "pathology"}
    assert "no pathology report" in body["detail"]

    study = await client.post(
        f"/api/cases/{case['id']}/studies",
        headers=coord,
        json={
            "study_instance_uid": "1.2.3.4.5",
            "description": "CT",
            "modality": "CT",
            "study_date": "2026-11-10",
        },
    )
    assert study.status == 201
    form = FormData()
    form.add_field(
        "file", b"%PDF-1.4\n% pathology\n", filename="path.pdf", content_type="application/pdf"
    )
    up = await client.post(f"/api/cases/{case['id']}/attachments", data=form, headers=coord)
    assert up.status == 201, await up.text()
    ready = await _move(client, coord, case["id"], "ready")
    assert ready.status == 200
    assert (await ready.json())["readiness"]["ready"] is True

    got = await client.get(
        f"/api/cases/{case['id']}/attachments/{(await up.json())['id']}", headers=coord
    )
    assert await got.read() == b"%PDF-1.4\n% pathology\n"


async def test_illegal_transition_names_the_current_state_and_changes_nothing(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    resp = await _move(client, auth["coordinator"], ids["requested_case"], "ready")
    assert resp.status == 409
    body = await resp.json()
    assert "is requested" in body["detail"] and body["errors"][0]["field"] == "to"
    case = await (
        await client.get(f"/api/cases/{ids['requested_case']}", headers=auth["coordinator"])
    ).json()
    assert case["state"] == "requested"


async def test_unknown_state_and_rejection_without_reason_are_refused(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    coord = auth["coordinator"]
    unknown = await _move(client, coord, ids["requested_case"], "limbo")
    assert unknown.status == 422 and (await unknown.json())["errors"][0]["field"] == "to"
    no_reason = await _move(client, coord, ids["requested_case"], "rejected")
    assert no_reason.status == 422 and (await no_reason.json())["errors"][0]["field"] == "reason"
    rejected = await _move(
        client, coord, ids["requested_case"], "rejected", reason="Outside this board's remit"
    )
    assert rejected.status == 200
    assert (await rejected.json())["rejection_reason"] == "Outside this board's remit"


async def test_finalized_is_not_reachable_by_a_plain_transition(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    coord = auth["coordinator"]
    assert (await _move(client, coord, ids["ready_case"], "discussed")).status == 200
    resp = await _move(client, coord, ids["ready_case"], "finalized")
    assert resp.status == 409
    assert "consensus note" in (await resp.json())["detail"]


async def test_every_transition_is_audited(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    await _move(client, auth["chair"], ids["ready_case"], "discussed")
    async with client.app[SERVICES].db.read() as session:
        rows = list(
            await session.exec(
                select(AuditRecord)
                .where(
                    AuditRecord.action == "case.transition",
                    AuditRecord.target_id == str(ids["ready_case"]),
                )
                .order_by(AuditRecord.id)
            )
        )
    # The demo's own moves of this case are in the chain too; the chair's move is the newest.
    assert len(rows) == 4
    assert rows[-1].detail == {"from": "ready", "to": "discussed"}
    assert rows[-1].actor_id == 3


async def test_duplicate_mrn_in_one_institution_is_refused_and_nothing_stored(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]]
) -> None:
    before = await _counts(client)
    resp = await client.post(
        "/api/cases",
        headers=auth["coordinator"],
        json={**NEW_CASE, "patient": {**NEW_CASE["patient"], "mrn": " hz00012345 "}},
    )
    assert resp.status == 409
    body = await resp.json()
    assert body["errors"][0]["field"] == "patient.mrn"
    assert await _counts(client) == before


async def test_known_patient_gets_a_second_case_by_patient_id(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    first = await (
        await client.get(f"/api/cases/{ids['ready_case']}", headers=auth["coordinator"])
    ).json()
    second = await _new_case(
        client, auth["coordinator"], patient=None, patient_id=first["patient"]["id"]
    )
    assert second["patient"]["mrn"] == "HZ00012345"
    found = await (
        await client.post(
            "/api/cases/lookup", json={"mrn": "hz00012345"}, headers=auth["coordinator"]
        )
    ).json()
    assert sorted(c["id"] for c in found["items"]) == sorted([ids["ready_case"], second["id"]])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient": {**NEW_CASE["patient"], "sex": "x"}}, "patient.sex"),
        ({"patient": {**NEW_CASE["patient"], "birth_date": "2999-01-01"}}, "patient.birth_date"),
        ({"patient": {**NEW_CASE["patient"], "birth_date": "not-a-date"}}, "patient.birth_date"),
        ({"board_id": 999}, "board_id"),
        ({"summary_language": "fr"}, "summary_language"),
        ({"summary_translation": "译文", "translation_language": "zh-CN"}, "translator"),
        ({"consent_date": None}, "consent_date"),
        ({"clinical_question": ""}, "clinical_question"),
        ({"patient": None}, "patient"),
    ],
)
async def test_bad_case_intake_is_refused_and_nothing_stored(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    change: dict[str, Any],
    field: str,
) -> None:
    before = await _counts(client)
    resp = await client.post("/api/cases", json={**NEW_CASE, **change}, headers=auth["coordinator"])
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == field
    assert await _counts(client) == before


def _form(data: bytes, content_type: str, name: str = "file") -> FormData:
    form = FormData()
    form.add_field(name, data, filename="report", content_type=content_type)
    return form


@pytest.mark.parametrize(
    ("form", "status"),
    [
        (_form(b"\x89PNG\r\n\x1a\n....", "image/png"), 422),
        (_form(b"<html>not a pdf</html>", "application/pdf"), 422),
        (_form(b"\xff\xfe\x00bad", "text/plain"), 422),
        (_form(b"", "text/plain"), 422),
        (_form(b"%PDF-1.4 ok", "application/pdf", name="other"), 422),
        (_form(b"%PDF-" + b"0" * (10 * 1024 * 1024), "application/pdf"), 413),
    ],
    ids=["png", "fake-pdf", "not-utf8", "empty", "wrong-part", "oversized"],
)
async def test_bad_pathology_upload_is_refused_and_nothing_stored(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    form: FormData,
    status: int,
) -> None:
    before = await _counts(client)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/attachments", data=form, headers=auth["coordinator"]
    )
    assert resp.status == status, await resp.text()
    assert (await resp.json())["errors"][0]["field"] == "file"
    assert await _counts(client) == before


async def test_patient_identifiers_and_summary_are_encrypted_at_rest(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]]
) -> None:
    await _new_case(client, auth["coordinator"], clinical_summary="肺腺癌 secret summary")
    settings = client.app[SERVICES].settings
    raw = b""
    for path in settings.data_dir.glob("eboard.sqlite3*"):
        raw += path.read_bytes()
    for plain in (
        "Qian Hui",
        "HZ00055555",
        "1968-04-09",
        "secret summary",
        "Wang Fang",
        "invasive adenocarcinoma",
    ):
        assert plain.encode() not in raw, plain
    with sqlite3.connect(settings.data_dir / "eboard.sqlite3") as db:
        sealed = db.execute("SELECT name_enc FROM patient LIMIT 1").fetchone()[0]
    assert sealed.startswith("k1:")


async def test_opinion_one_per_member_and_updated_in_place(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    url = f"/api/cases/{ids['ready_case']}/opinions"
    assert (
        await client.put(
            f"{url}/mine", json={"text": "Surgery after osimertinib"}, headers=auth["surgeon"]
        )
    ).status == 200
    assert (
        await client.put(f"{url}/mine", json={"text": "Surgery first"}, headers=auth["surgeon"])
    ).status == 200
    listed = await (await client.get(url, headers=auth["chair"])).json()
    assert [(o["display_name"], o["text"]) for o in listed["items"]] == [
        ("Dr. Zhao Lei", "Surgery first")
    ]
    empty = await client.put(f"{url}/mine", json={"text": "  "}, headers=auth["surgeon"])
    assert empty.status == 422 and (await empty.json())["errors"][0]["field"] == "text"


@pytest.mark.parametrize(
    "uid",
    ["1.2.³", "1.2.03", "1..2", "../1.2", "1.2/3", "1." + "2" * 64],
    ids=["non-ascii-digit", "leading-zero", "empty-part", "dotdot", "slash", "65-chars"],
)
async def test_a_study_reference_that_is_not_a_uid_is_refused_naming_it(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], uid: str
) -> None:
    coord = auth["coordinator"]
    case = await _new_case(client, coord)
    refused = await client.post(
        f"/api/cases/{case['id']}/studies",
        headers=coord,
        json={
            "study_instance_uid": uid,
            "description": "CT",
            "modality": "CT",
            "study_date": "2026-11-10",
        },
    )
    assert refused.status == 422, await refused.text()
    body = await refused.json()
    assert [e["field"] for e in body["errors"]] == ["study_instance_uid"]
    after = await client.get(f"/api/cases/{case['id']}", headers=coord)
    assert (await after.json())["studies"] == []
