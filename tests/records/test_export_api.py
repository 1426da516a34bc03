"""Exporting one agreed plan through the REST API: the four formats read back with third-party
parsers, audiences, the audit, and every bad input refused with nothing audited."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from fhir.resources.R4B.bundle import Bundle
from hl7apy.parser import parse_message
from sqlmodel import col, select

from server.models import AuditRecord, BoardMember, Case
from server.notes.signature import verify_file
from server.services import Services
from server.signing import keys_from_jwks

Client = TestClient[Any, Any]
Headers = dict[str, dict[str, str]]
MRN = "HZ00054321"
NAME = "Chen Hui"


async def _exports(services: Services) -> list[AuditRecord]:
    async with services.db.read() as db:
        rows = await db.exec(
            select(AuditRecord)
            .where(AuditRecord.action == "plan.export")
            .order_by(col(AuditRecord.id))
        )
        return list(rows)


async def _get(client: Client, path: str, headers: dict[str, str]) -> tuple[int, bytes, Any]:
    resp = await client.get(path, headers=headers)
    return resp.status, await resp.read(), resp


def _pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "plan.pdf"
    path.write_bytes(pdf)
    run = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    )
    return run.stdout.decode()


async def test_records_exports_the_demo_plan_in_all_four_formats_each_audited(
    client: Client, auth: Headers, ids: dict[str, int], services: Services, tmp_path: Path
) -> None:
    case_id = ids["plan_case"]
    url = f"/api/cases/{case_id}/plan/export"
    records = auth["records"]

    status, pdf, resp = await _get(client, f"{url}?format=pdf&language=zh-CN", records)
    assert status == 200, pdf
    assert resp.content_type == "application/pdf"
    assert 'filename="DEMO-0001-plan-v1.pdf"' in resp.headers["Content-Disposition"]
    text = _pdf_text(pdf, tmp_path)
    assert "病例编号" in text and "病历号" in text and MRN in text

    status, body, resp = await _get(client, f"{url}?format=fhir", records)
    assert status == 200 and resp.content_type == "application/fhir+json"
    bundle = Bundle.model_validate_json(body)
    kinds = [e.resource.__resource_type__ for e in bundle.entry]
    assert kinds[0] == "Composition" and "DocumentReference" in kinds
    assert MRN in body.decode()

    status, body, resp = await _get(client, f"{url}?format=hl7", records)
    assert status == 200 and resp.content_type == "x-application/hl7-v2+er7"
    message = parse_message(body.decode(), find_groups=False)
    assert message.msh.msh_9.to_er7() == "MDM^T02^MDM_T02"
    assert message.txa.txa_17.to_er7() == "AU"
    assert MRN in message.pid.to_er7()

    status, body, resp = await _get(client, f"{url}?format=json", records)
    assert status == 200 and resp.content_type == "application/json"
    report = verify_file(body, keys_from_jwks(services.signing.jwks()))
    assert report.ok, report.problems

    audited = await _exports(services)
    assert [(r.detail["format"], r.detail["audience"], r.detail["via"]) for r in audited] == [
        ("pdf", "home", "api"),
        ("fhir", "home", "api"),
        ("hl7", "home", "api"),
        ("json", "home", "api"),
    ]
    assert audited[0].detail["language"] == "zh-CN"
    assert all(r.target_id == str(case_id) and r.actor_id is not None for r in audited)
    assert MRN not in json.dumps([r.detail for r in audited])


async def test_a_records_officer_asks_for_the_external_audience_and_gets_no_identifiers(
    client: Client, auth: Headers, ids: dict[str, int], services: Services, tmp_path: Path
) -> None:
    url = f"/api/cases/{ids['plan_case']}/plan/export?format=pdf&audience=external"
    status, pdf, _ = await _get(client, url, auth["records"])
    assert status == 200
    text = _pdf_text(pdf, tmp_path)
    assert "DEMO-0001" in text and MRN not in text and NAME not in text
    assert (await _exports(services))[-1].detail["audience"] == "external"


async def test_an_external_member_gets_the_external_audience_and_may_not_ask_for_home(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    url = f"/api/cases/{ids['plan_case']}/plan/export?format=fhir"
    status, body, _ = await _get(client, url, auth["external"])
    assert status == 200, body
    assert MRN not in body.decode() and NAME not in body.decode()
    Bundle.model_validate_json(body)
    assert (await _exports(services))[-1].detail["audience"] == "external"

    status, body, _ = await _get(client, f"{url}&audience=home", auth["external"])
    assert status == 403 and b"audience" in body
    # An audience that does not exist is refused by name, not quietly made external.
    status, body, _ = await _get(client, f"{url}&audience=everyone", auth["external"])
    assert status == 422 and b"audience" in body and b"everyone" in body
    assert len(await _exports(services)) == 1


async def test_bad_exports_are_refused_by_name_and_nothing_is_audited(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    records = auth["records"]
    plan = f"/api/cases/{ids['plan_case']}/plan/export"
    cases = {
        f"{plan}?format=docx": (422, "format"),
        f"{plan}": (422, "format"),
        f"{plan}?format=pdf&language=fr": (422, "language"),
        f"{plan}?format=pdf&audience=press": (422, "audience"),
        f"/api/cases/{ids['ready_case']}/plan/export?format=pdf": (409, "no finalized note"),
        "/api/cases/999999/plan/export?format=pdf": (404, "no case"),
    }
    for path, (status, words) in cases.items():
        got, body, _ = await _get(client, path, records)
        assert got == status, (path, body)
        assert words in body.decode(), (path, body)
    assert await _exports(services) == []


async def test_a_records_officer_of_another_institution_gets_403(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    from server.accounts import create_user
    from server.models import Institution

    async with services.db.write() as db:
        roc = (await db.exec(select(Institution).where(Institution.code == "ROC"))).one()
        assert roc.id is not None
        user = await create_user(
            db,
            services,
            username="roc-records",
            password="a long enough password",
            display_name="ROC Records",
            role="records",
            institution_id=roc.id,
        )
        token, _ = services.tokens.issue("access", str(user.id), 3600, role="records")
        # Even listed on the case's board (whose patient consented to external review).
        assert user.id is not None
        db.add(BoardMember(board_id=ids["board_id"], user_id=user.id, role="observer"))
    headers = {"Authorization": f"Bearer {token}"}
    case = ids["plan_case"]
    for path in ("plan/export?format=json", "plan/signed", "plan"):
        status, body, _ = await _get(client, f"/api/cases/{case}/{path}", headers)
        assert status == 403 and b"another institution" in body, (path, body)
    resp = await client.post(
        "/api/records/search", json={"case_number": "DEMO-0001"}, headers=headers
    )
    assert resp.status == 200
    assert (await resp.json())["total"] == 0  # another institution's plans are not found
    assert await _exports(services) == []
    async with services.db.read() as db:
        case = await db.get(Case, ids["plan_case"])
        assert case is not None and case.state == "finalized"


async def test_the_signed_plan_fetched_to_check_it_is_audited_as_a_view_not_an_export(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    url = f"/api/cases/{ids['plan_case']}/plan/signed"
    status, body, _ = await _get(client, f"{url}?purpose=view", auth["records"])
    assert status == 200 and verify_file(body).ok
    status, _, _ = await _get(client, url, auth["records"])
    assert status == 200
    status, body, _ = await _get(client, f"{url}?purpose=sell", auth["records"])
    assert status == 422 and b"purpose" in body
    async with services.db.read() as db:
        rows = await db.exec(
            select(AuditRecord.action)
            .where(col(AuditRecord.action).startswith("plan."))
            .order_by(col(AuditRecord.id))
        )
        actions = [a for a in rows if a in ("plan.view", "plan.export")]
    assert actions == ["plan.view", "plan.export"]


async def test_another_sites_page_cannot_make_the_browser_export_a_plan(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    case = ids["plan_case"]
    for path in (f"/api/cases/{case}/plan/export?format=json", f"/api/cases/{case}/plan/signed"):
        for site in ("cross-site", "same-site"):
            headers = {**auth["records"], "Sec-Fetch-Site": site}
            status, body, _ = await _get(client, path, headers)
            assert status == 403 and b"another site" in body, (path, site)
    assert await _exports(services) == []
    # eBoard's own page (and a tool, which sends no Fetch Metadata) may.
    headers = {**auth["records"], "Sec-Fetch-Site": "same-origin"}
    status, _, _ = await _get(client, f"/api/cases/{case}/plan/export?format=json", headers)
    assert status == 200
    assert len(await _exports(services)) == 1


async def test_one_user_may_not_queue_more_than_three_exports_at_once(
    client: Client, auth: Headers, ids: dict[str, int], services: Services
) -> None:
    url = f"/api/cases/{ids['plan_case']}/plan/export?format=pdf&language=en"
    replies = await asyncio.gather(*(_get(client, url, auth["records"]) for _ in range(4)))
    assert sorted(status for status, _, _ in replies) == [200, 200, 200, 429]
    (refused,) = [body for status, body, _ in replies if status == 429]
    assert b"being made" in refused
    assert len(await _exports(services)) == 3
    # Once they are made, the next is welcome.
    status, _, _ = await _get(client, url, auth["records"])
    assert status == 200
