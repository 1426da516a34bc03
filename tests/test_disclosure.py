"""What a refusal tells a caller who may not see a case: only what they sent (its id), never
the case's number, its patient or its board."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import select

from server.accounts import create_user
from server.boards import BoardSpec, create_board
from server.cases import CaseIn, PatientIn, create_case
from server.models import Board, Case, Institution, Patient, User
from server.services import Services

Auth = dict[str, dict[str, str]]
# Routes that read or change one case and that a specialist's role allows (the others refuse
# the role before the case is looked at), with a body where they need one.
CASE_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/cases/{case}", None),
    ("PATCH", "/api/cases/{case}", {"clinical_question": "Changed?"}),
    ("GET", "/api/cases/{case}/attachments/1", None),
    (
        "POST",
        "/api/cases/{case}/studies",
        {
            "study_instance_uid": "1.2.3",
            "description": "CT",
            "modality": "CT",
            "study_date": "2026-11-20",
        },
    ),
    ("GET", "/api/cases/{case}/opinions", None),
    ("PUT", "/api/cases/{case}/opinions/mine", {"text": "Resect."}),
    ("GET", "/api/cases/{case}/imaging", None),
    ("GET", "/api/cases/{case}/note", None),
    ("GET", "/api/cases/{case}/plan", None),
    ("GET", "/api/cases/{case}/plan/signed", None),
]


async def _secrets(services: Services, case_id: int) -> list[str]:
    """What names the case beyond its id: number, patient, board."""
    cipher = services.cipher
    async with services.db.read() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        patient = await session.get(Patient, case.patient_id)
        board = await session.get(Board, case.board_id)
        assert patient is not None and board is not None
        birth = cipher.open("patient.birth_date", patient.birth_date_enc)
        return [
            case.number,
            cipher.open("patient.name", patient.name_enc),
            cipher.open("patient.mrn", patient.mrn_enc),
            birth,
            birth.replace("-", ""),
            board.name,
        ]


async def _outsider(services: Services) -> dict[str, str]:
    """A specialist of the case's institution who is on no board."""
    async with services.db.write() as session:
        coordinator = (await session.exec(select(User).where(User.username == "coordinator"))).one()
        user = await create_user(
            session,
            services,
            username="outsider",
            password="a long enough password",
            display_name="Dr. Outside",
            role="specialist",
            specialty="radiology",
            institution_id=coordinator.institution_id,
        )
    token, _ = services.tokens.issue("access", str(user.id), 3600, role=user.role)
    return {"Authorization": f"Bearer {token}"}


async def _assert_refusals_name_only_the_id(
    client: TestClient[Any, Any], headers: dict[str, str], case_id: int, secrets: list[str]
) -> None:
    for method, route, body in CASE_ROUTES:
        path = route.format(case=case_id)
        resp = await client.request(method, path, headers=headers, json=body)
        text = await resp.text()
        assert resp.status == 403, (path, resp.status, text)
        assert str(case_id) in (await resp.json())["detail"], (path, text)
        for secret in secrets:
            assert secret not in text, (path, secret, text)


@pytest.mark.parametrize("case", ["ready_case", "plan_case"])
async def test_a_specialist_on_no_board_learns_nothing_of_the_case_from_a_refusal(
    client: TestClient[Any, Any], services: Services, ids: dict[str, int], case: str
) -> None:
    headers = await _outsider(services)
    secrets = await _secrets(services, ids[case])
    await _assert_refusals_name_only_the_id(client, headers, ids[case], secrets)


async def test_an_external_member_learns_nothing_of_a_case_without_consent(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    case = ids["requested_case"]  # on the external member's board; no consent to external review
    secrets = await _secrets(services, case)
    await _assert_refusals_name_only_the_id(client, auth["external"], case, secrets)
    # The same member reads a consented case of the same board: the refusal was about consent.
    resp = await client.get(f"/api/cases/{ids['ready_case']}", headers=auth["external"])
    assert resp.status == 200


async def _foreign_case(services: Services) -> int:
    """A case on a board of the external institution, which the home staff may not see."""
    async with services.db.write() as session:
        external = (await session.exec(select(User).where(User.username == "external"))).one()
        institution = await session.get(Institution, external.institution_id)
        assert institution is not None and institution.id is not None
        board = await create_board(
            session,
            BoardSpec(
                name="Rochester Lung Board",
                tumor_site="thoracic",
                timezone="America/Chicago",
                rrule="FREQ=WEEKLY;BYDAY=TU",
                start_time="08:00",
                duration_minutes=60,
                required_specialties=[],
                start_date=date.today(),
            ),
            home_institution_id=institution.id,
            horizon_weeks=4,
        )
        assert board.id is not None
        case = await create_case(
            session,
            services,
            external,
            CaseIn(
                board_id=board.id,
                patient=PatientIn("Mary Jones", "RO00077777", date(1950, 1, 31), "female"),
                clinical_question="Resectable?",
                clinical_summary="Female, 76; 3 cm RUL mass.",
                summary_language="en",
            ),
        )
        assert case.id is not None
        return case.id


async def test_adding_another_institutions_case_to_an_agenda_does_not_name_it(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    case = await _foreign_case(services)
    secrets = await _secrets(services, case)
    coordinator = auth["coordinator"]
    sessions = await client.get(f"/api/boards/{ids['board_id']}/sessions", headers=coordinator)
    assert sessions.status == 200, await sessions.text()
    session_id = (await sessions.json())["items"][0]["id"]
    agenda = f"/api/sessions/{session_id}/agenda"
    before = await (await client.get(agenda, headers=coordinator)).text()
    resp = await client.post(
        agenda, headers=coordinator, json={"case_id": case, "timebox_minutes": 10}
    )
    text = await resp.text()
    assert resp.status == 422, text
    problem = await resp.json()
    assert problem["errors"][0]["field"] == "case_id" and str(case) in problem["detail"]
    for secret in secrets:
        assert secret not in text, (secret, text)
    # Refused as a case id that does not exist is, and nothing was added.
    unknown = await client.post(
        agenda, headers=coordinator, json={"case_id": 999_999, "timebox_minutes": 10}
    )
    assert (unknown.status, (await unknown.json())["detail"]) == (
        422,
        problem["detail"].replace(str(case), "999999"),
    )
    assert await (await client.get(agenda, headers=coordinator)).text() == before
