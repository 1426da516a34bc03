"""Roles: every REST route answers every role as the policy written out here says.

EXPECTED is the policy, stated by hand and independently of the server's own route table:
a route added without an entry here, or declared with other roles, fails the suite. The matrix
then sends each role a valid request on every route: an allowed role gets 2xx, any other role
a 403 problem, and an anonymous caller a 401 problem (or 2xx on a public route).
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from aiohttp import ClientResponse, FormData, web
from aiohttp.test_utils import TestClient
from sqlmodel import col, select

from server.api.openapi import ROUTES
from server.config import Settings
from server.demo import DEMO_PASSWORD
from server.imaging.phantom import write_ct_series
from server.models import Attachment, BoardSession, Institution, User, utcnow
from server.services import SERVICES
from tests.bench.orthanc import Orthanc

RouteKey = tuple[str, str]
Auth = dict[str, dict[str, str]]

ANONYMOUS = "anonymous"
ROLES = ("admin", "coordinator", "chair", "specialist", "observer", "records")
# The demo user who holds each role; all of them work at the demo board's home institution.
DEMO_USER = {
    "admin": "admin",
    "coordinator": "coordinator",
    "chair": "chair",
    "specialist": "radiologist",
    "observer": "observer",
    "records": "records",
}

PUBLIC: frozenset[str] = frozenset()
EVERYONE = frozenset(ROLES)
ADMIN = frozenset({"admin"})
MANAGERS = frozenset({"admin", "coordinator"})
CASE_AUTHORS = frozenset({"admin", "coordinator", "chair", "specialist"})
MOVERS = frozenset({"admin", "coordinator", "chair"})
OPINION_GIVERS = frozenset({"chair", "specialist"})
CHAIRS = frozenset({"chair"})
RECORD_KEEPERS = frozenset({"admin", "coordinator", "records"})

EXPECTED: dict[RouteKey, frozenset[str]] = {
    ("GET", "/api/health"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/api/audit/verify"): ADMIN,
    ("POST", "/api/login"): PUBLIC,
    ("POST", "/api/logout"): PUBLIC,
    ("GET", "/api/me"): EVERYONE,
    ("GET", "/api/institutions"): EVERYONE,
    ("POST", "/api/institutions"): ADMIN,
    ("GET", "/api/users"): MANAGERS,
    ("POST", "/api/users"): ADMIN,
    ("PATCH", "/api/users/{user_id}"): ADMIN,
    ("GET", "/api/boards"): EVERYONE,
    ("POST", "/api/boards"): MANAGERS,
    ("GET", "/api/boards/{board_id}"): EVERYONE,
    ("POST", "/api/boards/{board_id}/members"): MANAGERS,
    ("GET", "/api/boards/{board_id}/sessions"): EVERYONE,
    ("POST", "/api/boards/{board_id}/sessions"): MANAGERS,
    ("POST", "/api/boards/{board_id}/invitations"): MANAGERS,
    ("GET", "/api/sessions/{session_id}"): EVERYONE,
    ("POST", "/api/sessions/{session_id}/cancel"): MANAGERS,
    ("GET", "/api/sessions/{session_id}/calendar.ics"): EVERYONE,
    # Those who may join a live room: records staff never (admins when board members).
    ("GET", "/api/sessions/{session_id}/ice-servers"): EVERYONE - {"records"},
    ("GET", "/api/me/calendar.ics"): EVERYONE,
    ("GET", "/api/sessions/{session_id}/agenda"): EVERYONE,
    ("POST", "/api/sessions/{session_id}/agenda"): MANAGERS,
    ("PUT", "/api/sessions/{session_id}/agenda/order"): MANAGERS,
    ("PATCH", "/api/agenda-items/{item_id}"): MANAGERS,
    ("DELETE", "/api/agenda-items/{item_id}"): MANAGERS,
    ("GET", "/api/cases"): EVERYONE,
    ("POST", "/api/cases/lookup"): EVERYONE,
    ("POST", "/api/cases"): CASE_AUTHORS,
    ("GET", "/api/cases/{case_id}"): EVERYONE,
    ("PATCH", "/api/cases/{case_id}"): CASE_AUTHORS,
    ("POST", "/api/cases/{case_id}/transitions"): MOVERS,
    ("POST", "/api/cases/{case_id}/attachments"): CASE_AUTHORS,
    ("GET", "/api/cases/{case_id}/attachments/{attachment_id}"): EVERYONE,
    ("POST", "/api/cases/{case_id}/studies"): CASE_AUTHORS,
    ("GET", "/api/cases/{case_id}/opinions"): EVERYONE,
    ("PUT", "/api/cases/{case_id}/opinions/mine"): OPINION_GIVERS,
    ("GET", "/api/invitations/{token}"): PUBLIC,
    ("POST", "/api/invitations/accept"): PUBLIC,
    ("POST", "/api/cases/{case_id}/imaging"): CASE_AUTHORS,
    ("GET", "/api/cases/{case_id}/imaging"): EVERYONE,
    ("POST", "/api/cases/{case_id}/imaging/import"): CASE_AUTHORS,
    ("POST", "/api/cases/{case_id}/imaging/{alias}/clearance"): MANAGERS,
    ("GET", "/dicom-web/studies"): EVERYONE,
    ("GET", "/dicom-web/studies/{study}/series"): EVERYONE,
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances"): EVERYONE,
    ("GET", "/dicom-web/studies/{study}/series/{series}/metadata"): EVERYONE,
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata"): EVERYONE,
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    ): EVERYONE,
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{instance}"): EVERYONE,
    ("GET", "/dicom-web/studies/{study}/series/{series}"): EVERYONE,
    ("POST", "/dicom-web/studies"): CASE_AUTHORS,
    ("GET", "/api/keys"): PUBLIC,
    ("GET", "/api/templates"): EVERYONE,
    ("GET", "/api/templates/{name}"): EVERYONE,
    ("GET", "/api/cases/{case_id}/note"): EVERYONE,
    ("POST", "/api/cases/{case_id}/note/finalize"): CHAIRS,
    ("POST", "/api/cases/{case_id}/plan/amendments"): CHAIRS,
    ("GET", "/api/cases/{case_id}/plan"): EVERYONE,
    ("GET", "/api/cases/{case_id}/plan/signed"): EVERYONE,
    ("PUT", "/api/cases/{case_id}/plan/followup/{rank}"): MANAGERS,
    ("GET", "/api/cases/{case_id}/plan/export"): EVERYONE,
    ("POST", "/api/records/search"): RECORD_KEEPERS,
    ("GET", "/api/records/metrics"): RECORD_KEEPERS,
    ("POST", "/api/exports"): RECORD_KEEPERS,
    ("GET", "/api/exports/{job_id}"): RECORD_KEEPERS,
    ("GET", "/api/exports/{job_id}/file"): RECORD_KEEPERS,
}


# The PACS import route needs a PACS that holds a study: one Orthanc serves every cell.
PACS_STUDY = "1.2.826.0.1.3680043.10.1447.4242"


@pytest.fixture(scope="module")
def pacs_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert Orthanc.available() is None, "Orthanc is installed by `make test`"
    folder = tmp_path_factory.mktemp("pacs")
    study = write_ct_series(folder, slices=2, size=32, study_uid=PACS_STUDY)
    with Orthanc() as orthanc:
        orthanc.upload(study)
        yield orthanc.dicomweb_url


@pytest.fixture
def settings(settings: Settings, pacs_url: str) -> Settings:
    return replace(settings, pacs_url=pacs_url)


NEW_BOARD = {
    "name": "Breast MDT",
    "tumor_site": "breast",
    "timezone": "Asia/Shanghai",
    "rrule": "FREQ=WEEKLY;BYDAY=WE",
    "start_time": "12:00",
}


@dataclass(frozen=True)
class Context:
    """Real ids from the demo, plus what a cell may need created first."""

    board_id: int
    case_id: int  # the ready case
    attachment_id: int  # the ready case's pathology report
    session_id: int  # the board's next session; its agenda holds agenda_item_id
    other_session_id: int  # the session after it, with an empty agenda
    home_institution_id: int
    external_institution_id: int
    outsider_id: int  # a demo user who is not a member of the board
    agenda_item_id: int = 0  # made only for the routes in NEEDS_AGENDA_ITEM
    invitation: str = ""  # made only for the routes in NEEDS_INVITATION
    # Imaging of the ready case, stored only for the DICOMweb routes.
    study: str = ""
    series: str = ""
    instance: str = ""
    stow_body: bytes = b""
    burned_in_alias: str = ""  # a burned-in series of the ready case, only for NEEDS_BURNED_IN
    plan_case_id: int = 0  # DEMO-0001, whose agreed plan is signed (an amendment is open for
    # the routes in NEEDS_AMENDMENT)
    export_job: str = "none"  # a finished bulk export of the role's user, for NEEDS_EXPORT_JOB


@dataclass(frozen=True)
class Request:
    path: str
    json: Any = None
    form: Callable[[], FormData] | None = None
    body: bytes | None = None
    content_type: str = ""


def _report() -> FormData:
    form = FormData()
    form.add_field(
        "file",
        b"Pathology: adenocarcinoma, acinar predominant.",
        filename="pathology.txt",
        content_type="text/plain",
    )
    return form


def _days(n: int) -> str:
    return (date.today() + timedelta(days=n)).isoformat()


def _instant(days: int, hour: int) -> str:
    day = datetime.now(UTC).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).isoformat()


REQUESTS: dict[RouteKey, Callable[[Context], Request]] = {
    ("GET", "/api/health"): lambda c: Request("/api/health"),
    ("GET", "/api/openapi.json"): lambda c: Request("/api/openapi.json"),
    ("GET", "/metrics"): lambda c: Request("/metrics"),
    ("GET", "/api/audit/verify"): lambda c: Request("/api/audit/verify"),
    ("POST", "/api/login"): lambda c: Request(
        "/api/login", {"username": "chair", "password": DEMO_PASSWORD}
    ),
    ("POST", "/api/logout"): lambda c: Request("/api/logout"),
    ("GET", "/api/me"): lambda c: Request("/api/me"),
    ("GET", "/api/institutions"): lambda c: Request("/api/institutions"),
    ("POST", "/api/institutions"): lambda c: Request(
        "/api/institutions",
        {"code": "SHCH", "name": "Shanghai Chest Hospital", "timezone": "Asia/Shanghai"},
    ),
    ("GET", "/api/users"): lambda c: Request("/api/users"),
    ("PATCH", "/api/users/{user_id}"): lambda c: Request(
        f"/api/users/{c.outsider_id}", {"role": "observer"}
    ),
    ("POST", "/api/users"): lambda c: Request(
        "/api/users",
        {
            "username": "nurse.new",
            "password": "a-long-password",
            "display_name": "Nurse New",
            "role": "observer",
            "institution_id": c.home_institution_id,
            "specialty": "nursing",
        },
    ),
    ("GET", "/api/boards"): lambda c: Request("/api/boards"),
    ("POST", "/api/boards"): lambda c: Request("/api/boards", NEW_BOARD),
    ("GET", "/api/boards/{board_id}"): lambda c: Request(f"/api/boards/{c.board_id}"),
    ("POST", "/api/boards/{board_id}/members"): lambda c: Request(
        f"/api/boards/{c.board_id}/members", {"user_id": c.outsider_id, "role": "observer"}
    ),
    ("GET", "/api/boards/{board_id}/sessions"): lambda c: Request(
        f"/api/boards/{c.board_id}/sessions"
    ),
    ("POST", "/api/boards/{board_id}/sessions"): lambda c: Request(
        f"/api/boards/{c.board_id}/sessions", {"start": _instant(60, 13), "end": _instant(60, 15)}
    ),
    ("POST", "/api/boards/{board_id}/invitations"): lambda c: Request(
        f"/api/boards/{c.board_id}/invitations",
        {
            "institution_id": c.external_institution_id,
            "specialty": "radiation_oncology",
            "email": "invitee@roc.example",
        },
    ),
    ("GET", "/api/sessions/{session_id}"): lambda c: Request(f"/api/sessions/{c.session_id}"),
    ("POST", "/api/sessions/{session_id}/cancel"): lambda c: Request(
        f"/api/sessions/{c.session_id}/cancel"
    ),
    ("GET", "/api/sessions/{session_id}/calendar.ics"): lambda c: Request(
        f"/api/sessions/{c.session_id}/calendar.ics"
    ),
    ("GET", "/api/sessions/{session_id}/ice-servers"): lambda c: Request(
        f"/api/sessions/{c.session_id}/ice-servers"
    ),
    ("GET", "/api/me/calendar.ics"): lambda c: Request("/api/me/calendar.ics"),
    ("GET", "/api/sessions/{session_id}/agenda"): lambda c: Request(
        f"/api/sessions/{c.session_id}/agenda"
    ),
    ("POST", "/api/sessions/{session_id}/agenda"): lambda c: Request(
        f"/api/sessions/{c.other_session_id}/agenda", {"case_id": c.case_id, "timebox_minutes": 20}
    ),
    ("PUT", "/api/sessions/{session_id}/agenda/order"): lambda c: Request(
        f"/api/sessions/{c.session_id}/agenda/order", {"item_ids": [c.agenda_item_id]}
    ),
    ("PATCH", "/api/agenda-items/{item_id}"): lambda c: Request(
        f"/api/agenda-items/{c.agenda_item_id}", {"timebox_minutes": 25}
    ),
    ("DELETE", "/api/agenda-items/{item_id}"): lambda c: Request(
        f"/api/agenda-items/{c.agenda_item_id}"
    ),
    ("GET", "/api/cases"): lambda c: Request("/api/cases"),
    ("POST", "/api/cases/lookup"): lambda c: Request("/api/cases/lookup", {"mrn": "HZ00012345"}),
    ("POST", "/api/cases"): lambda c: Request(
        "/api/cases",
        {
            "board_id": c.board_id,
            "patient": {
                "name": "Qian Hui",
                "mrn": "HZ00055555",
                "birth_date": "1968-04-09",
                "sex": "female",
            },
            "clinical_question": "Solitary nodule, right middle lobe: resect or biopsy first?",
            "clinical_summary": "Female, 58; 1.8 cm PET-avid nodule.",
            "summary_language": "en",
        },
    ),
    ("GET", "/api/cases/{case_id}"): lambda c: Request(f"/api/cases/{c.case_id}"),
    ("PATCH", "/api/cases/{case_id}"): lambda c: Request(
        f"/api/cases/{c.case_id}", {"clinical_question": "Neoadjuvant osimertinib, then surgery?"}
    ),
    ("POST", "/api/cases/{case_id}/transitions"): lambda c: Request(
        f"/api/cases/{c.case_id}/transitions", {"to": "discussed"}
    ),
    ("POST", "/api/cases/{case_id}/attachments"): lambda c: Request(
        f"/api/cases/{c.case_id}/attachments", form=_report
    ),
    ("GET", "/api/cases/{case_id}/attachments/{attachment_id}"): lambda c: Request(
        f"/api/cases/{c.case_id}/attachments/{c.attachment_id}"
    ),
    ("POST", "/api/cases/{case_id}/studies"): lambda c: Request(
        f"/api/cases/{c.case_id}/studies",
        {
            "study_instance_uid": "1.2.826.0.1.3680043.10.543.777",
            "description": "PET-CT",
            "modality": "PT",
            "study_date": _days(-3),
        },
    ),
    ("GET", "/api/cases/{case_id}/opinions"): lambda c: Request(f"/api/cases/{c.case_id}/opinions"),
    ("PUT", "/api/cases/{case_id}/opinions/mine"): lambda c: Request(
        f"/api/cases/{c.case_id}/opinions/mine", {"text": "Favour neoadjuvant osimertinib."}
    ),
    ("GET", "/api/invitations/{token}"): lambda c: Request(f"/api/invitations/{c.invitation}"),
    ("POST", "/api/invitations/accept"): lambda c: Request(
        "/api/invitations/accept",
        {
            "token": c.invitation,
            "board_id": c.board_id,
            "username": "dr.invitee",
            "password": "a-long-password",
            "display_name": "Dr. Invitee",
        },
    ),
    ("GET", "/dicom-web/studies"): lambda c: Request(
        f"/dicom-web/studies?StudyInstanceUID={c.study}"
    ),
    ("GET", "/dicom-web/studies/{study}/series"): lambda c: Request(
        f"/dicom-web/studies/{c.study}/series"
    ),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances"): lambda c: Request(
        f"/dicom-web/studies/{c.study}/series/{c.series}/instances"
    ),
    ("GET", "/dicom-web/studies/{study}/series/{series}/metadata"): lambda c: Request(
        f"/dicom-web/studies/{c.study}/series/{c.series}/metadata"
    ),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata"): lambda c: (
        Request(f"/dicom-web/studies/{c.study}/series/{c.series}/instances/{c.instance}/metadata")
    ),
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    ): lambda c: Request(
        f"/dicom-web/studies/{c.study}/series/{c.series}/instances/{c.instance}/frames/1"
    ),
    ("GET", "/dicom-web/studies/{study}/series/{series}/instances/{instance}"): lambda c: Request(
        f"/dicom-web/studies/{c.study}/series/{c.series}/instances/{c.instance}"
    ),
    ("GET", "/dicom-web/studies/{study}/series/{series}"): lambda c: Request(
        f"/dicom-web/studies/{c.study}/series/{c.series}"
    ),
    ("POST", "/dicom-web/studies"): lambda c: Request(
        "/dicom-web/studies", body=c.stow_body, content_type=STOW_TYPE
    ),
    ("POST", "/api/cases/{case_id}/imaging"): lambda c: Request(
        f"/api/cases/{c.case_id}/imaging", form=_ct_upload
    ),
    ("GET", "/api/cases/{case_id}/imaging"): lambda c: Request(f"/api/cases/{c.case_id}/imaging"),
    ("POST", "/api/cases/{case_id}/imaging/import"): lambda c: Request(
        f"/api/cases/{c.case_id}/imaging/import", {"study_instance_uid": PACS_STUDY}
    ),
    ("POST", "/api/cases/{case_id}/imaging/{alias}/clearance"): lambda c: Request(
        f"/api/cases/{c.case_id}/imaging/{c.burned_in_alias}/clearance",
        {"reason": "checked every slice: no identifying text burned in"},
    ),
    ("GET", "/api/keys"): lambda c: Request("/api/keys"),
    ("GET", "/api/templates"): lambda c: Request("/api/templates"),
    ("GET", "/api/templates/{name}"): lambda c: Request("/api/templates/thoracic"),
    ("GET", "/api/cases/{case_id}/note"): lambda c: Request(f"/api/cases/{c.case_id}/note"),
    ("POST", "/api/cases/{case_id}/note/finalize"): lambda c: Request(
        f"/api/cases/{c.plan_case_id}/note/finalize", {}
    ),
    ("POST", "/api/cases/{case_id}/plan/amendments"): lambda c: Request(
        f"/api/cases/{c.plan_case_id}/plan/amendments", {"reason": "pathology revised"}
    ),
    ("GET", "/api/cases/{case_id}/plan"): lambda c: Request(f"/api/cases/{c.plan_case_id}/plan"),
    ("GET", "/api/cases/{case_id}/plan/signed"): lambda c: Request(
        f"/api/cases/{c.plan_case_id}/plan/signed"
    ),
    ("PUT", "/api/cases/{case_id}/plan/followup/{rank}"): lambda c: Request(
        f"/api/cases/{c.plan_case_id}/plan/followup/1", {"status": "done"}
    ),
    ("GET", "/api/cases/{case_id}/plan/export"): lambda c: Request(
        f"/api/cases/{c.plan_case_id}/plan/export?format=json"
    ),
    ("POST", "/api/records/search"): lambda c: Request(
        "/api/records/search", {"case_number": "DEMO-0001"}
    ),
    ("GET", "/api/records/metrics"): lambda c: Request("/api/records/metrics"),
    ("POST", "/api/exports"): lambda c: Request("/api/exports", {**_PLAN_DAYS, "format": "json"}),
    ("GET", "/api/exports/{job_id}"): lambda c: Request(f"/api/exports/{c.export_job}"),
    ("GET", "/api/exports/{job_id}/file"): lambda c: Request(f"/api/exports/{c.export_job}/file"),
}
# Days around the demo plan's signing, whichever the records officer's zone.
_PLAN_DAYS = {"from": _days(-2), "to": _days(2)}


# Made per cell through the API, as the coordinator, only where the route acts on one.
NEEDS_AGENDA_ITEM = {
    ("PUT", "/api/sessions/{session_id}/agenda/order"),
    ("PATCH", "/api/agenda-items/{item_id}"),
    ("DELETE", "/api/agenda-items/{item_id}"),
}
NEEDS_INVITATION = {("GET", "/api/invitations/{token}"), ("POST", "/api/invitations/accept")}
NEEDS_IMAGING = {route for route in EXPECTED if route[1].startswith("/dicom-web/")}
NEEDS_BURNED_IN = {("POST", "/api/cases/{case_id}/imaging/{alias}/clearance")}
# The ICE servers are only for board members: the admin is made one of the board.
NEEDS_MEMBERSHIP = {("GET", "/api/sessions/{session_id}/ice-servers")}
NEEDS_EXPORT_JOB = {("GET", "/api/exports/{job_id}"), ("GET", "/api/exports/{job_id}/file")}
NEEDS_AMENDMENT = {("POST", "/api/cases/{case_id}/note/finalize")}
STOW_BOUNDARY = "eboard-roles-boundary"


def _phantom(tmp: Path) -> tuple[list[bytes], str]:
    paths = write_ct_series(tmp, slices=2, size=32)
    study = str(pydicom.dcmread(paths[0]).StudyInstanceUID)
    return [p.read_bytes() for p in paths], study


def _burned_in_upload() -> FormData:
    path = write_ct_series(Path(tempfile.mkdtemp(prefix="eboard-roles-")), slices=1, size=32)[0]
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    data = io.BytesIO()
    ds.save_as(data, enforce_file_format=True)
    form = FormData()
    form.add_field("file", data.getvalue(), filename="sc.dcm", content_type="application/dicom")
    return form


def _ct_upload() -> FormData:
    files, _ = _phantom(Path(tempfile.mkdtemp(prefix="eboard-roles-")))
    form = FormData()
    form.add_field("file", files[0], filename="slice.dcm", content_type="application/dicom")
    return form


def _stow_body(files: list[bytes]) -> bytes:
    out = b""
    for data in files:
        out += f"--{STOW_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        out += data + b"\r\n"
    return out + f"--{STOW_BOUNDARY}--\r\n".encode()


STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={STOW_BOUNDARY}'


async def _ok(
    client: TestClient[Any, Any], method: str, path: str, headers: dict[str, str], json: Any = None
) -> Any:
    resp = await client.request(method, path, headers=headers, json=json)
    assert resp.status in (200, 201), f"{method} {path}: {resp.status} {await resp.text()}"
    return await resp.json()


async def _arrange(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], route: RouteKey, role: str
) -> Context:
    """The demo's ids, plus the agenda item or invitation the route acts on."""
    board, case = ids["board_id"], ids["ready_case"]
    async with client.app[SERVICES].db.read() as session:
        attachment = (
            await session.exec(select(Attachment.id).where(Attachment.case_id == case))
        ).first()
        sessions = list(
            await session.exec(
                select(BoardSession.id)
                .where(BoardSession.board_id == board, col(BoardSession.start_at) > utcnow())
                .order_by(col(BoardSession.start_at))
                .limit(2)
            )
        )
        institutions = {i.code: i.id for i in await session.exec(select(Institution))}
        outsider = (await session.exec(select(User.id).where(User.username == "records"))).one()
    assert attachment is not None and outsider is not None
    context = Context(
        board_id=board,
        case_id=case,
        attachment_id=attachment,
        session_id=sessions[0],
        other_session_id=sessions[1],
        home_institution_id=institutions["HZ"],
        external_institution_id=institutions["ROC"],
        outsider_id=outsider,
        plan_case_id=ids["plan_case"],
    )
    coord = auth["coordinator"]
    if route in NEEDS_MEMBERSHIP and role == "admin":
        async with client.app[SERVICES].db.read() as session:
            admin = (await session.exec(select(User.id).where(User.username == "admin"))).one()
        member = {"user_id": admin, "role": "specialist"}
        await _ok(client, "POST", f"/api/boards/{board}/members", coord, member)
    if route in NEEDS_AMENDMENT:
        await _ok(
            client,
            "POST",
            f"/api/cases/{ids['plan_case']}/plan/amendments",
            auth["chair"],
            {"reason": "staging corrected after pathology review"},
        )
    if route in NEEDS_AGENDA_ITEM:
        item = await _ok(
            client,
            "POST",
            f"/api/sessions/{context.session_id}/agenda",
            coord,
            {"case_id": case, "timebox_minutes": 15},
        )
        context = replace(context, agenda_item_id=item["id"])
    if route in NEEDS_INVITATION:
        invitation = await _ok(
            client,
            "POST",
            f"/api/boards/{board}/invitations",
            coord,
            {"institution_id": context.external_institution_id, "specialty": "surgery"},
        )
        context = replace(context, invitation=invitation["token"])
    if route in NEEDS_IMAGING:
        files, study = _phantom(Path(tempfile.mkdtemp(prefix="eboard-roles-")))
        await _ok(
            client,
            "POST",
            f"/api/cases/{case}/studies",
            coord,
            {"study_instance_uid": study, "modality": "CT", "study_date": "2026-11-20"},
        )
        first = pydicom.dcmread(io.BytesIO(files[0]))
        context = replace(
            context,
            study=study,
            series=str(first.SeriesInstanceUID),
            instance=str(first.SOPInstanceUID),
            stow_body=_stow_body(files[1:]),
        )
        resp = await client.post(
            "/dicom-web/studies",
            data=_stow_body(files[:1]),
            headers={**coord, "Content-Type": STOW_TYPE},
        )
        assert resp.status == 200, await resp.text()
    if route in NEEDS_BURNED_IN:
        resp = await client.post(
            f"/api/cases/{case}/imaging", data=_burned_in_upload(), headers=coord
        )
        assert resp.status == 201, await resp.text()
        context = replace(context, burned_in_alias=(await resp.json())["series"][0]["alias"])
    if route in NEEDS_EXPORT_JOB and role in RECORD_KEEPERS:
        headers = auth[DEMO_USER[role]]
        resp = await client.post(
            "/api/exports", json={**_PLAN_DAYS, "format": "json"}, headers=headers
        )
        assert resp.status == 202, await resp.text()
        job = await resp.json()
        while job["state"] == "running":
            await asyncio.sleep(0.05)
            job = await _ok(client, "GET", f"/api/exports/{job['id']}", headers)
        context = replace(context, export_job=job["id"])
    return context


async def _send(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], route: RouteKey, role: str
) -> ClientResponse:
    request = REQUESTS[route](await _arrange(client, auth, ids, route, role))
    headers = {} if role == ANONYMOUS else auth[DEMO_USER[role]]
    data: Any = request.form() if request.form else request.body
    if request.content_type:
        headers = {**headers, "Content-Type": request.content_type}
    return await client.request(
        route[0], request.path, headers=headers, json=request.json, data=data
    )


async def _assert_problem(resp: ClientResponse, status: int) -> None:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["status"] == status


def _cell_id(value: object) -> str:
    return " ".join(value) if isinstance(value, tuple) else str(value)


ALLOWED = [
    (route, role)
    for route, roles in EXPECTED.items()
    for role in (*ROLES, ANONYMOUS)
    if role in roles or not roles
]
FORBIDDEN = [
    (route, role)
    for route, roles in EXPECTED.items()
    if roles
    for role in ROLES
    if role not in roles
]
AUTHENTICATED = [route for route, roles in EXPECTED.items() if roles]


def test_every_wired_route_has_a_policy_entry(app: web.Application) -> None:
    wired = {(r.method, r.path) for r in app[ROUTES].routes}
    assert wired == set(EXPECTED)
    # Nothing reaches the API around the route table (and so around its role check).
    on_router = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.method != "HEAD"
        and (
            r.resource.canonical.startswith(("/api/", "/dicom-web/"))
            or r.resource.canonical == "/metrics"
        )
    }
    assert on_router == set(EXPECTED)


def test_every_route_declares_the_roles_of_the_policy(app: web.Application) -> None:
    declared = {(r.method, r.path): {role.value for role in r.roles} for r in app[ROUTES].routes}
    assert declared == {route: set(roles) for route, roles in EXPECTED.items()}


def test_every_policy_entry_has_a_valid_request() -> None:
    assert set(REQUESTS) == set(EXPECTED)


@pytest.mark.parametrize(("route", "role"), ALLOWED, ids=_cell_id)
async def test_allowed_role_gets_2xx(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], route: RouteKey, role: str
) -> None:
    resp = await _send(client, auth, ids, route, role)
    assert 200 <= resp.status < 300, await resp.text()


@pytest.mark.parametrize(("route", "role"), FORBIDDEN, ids=_cell_id)
async def test_role_outside_the_policy_gets_403_problem(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], route: RouteKey, role: str
) -> None:
    await _assert_problem(await _send(client, auth, ids, route, role), 403)


@pytest.mark.parametrize("route", AUTHENTICATED, ids=_cell_id)
async def test_anonymous_caller_gets_401_problem(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], route: RouteKey
) -> None:
    await _assert_problem(await _send(client, auth, ids, route, ANONYMOUS), 401)


async def test_external_member_sees_the_ready_case_without_identifiers(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int]
) -> None:
    path = f"/api/cases/{ids['ready_case']}"
    home = await (await client.get(path, headers=auth["coordinator"])).text()
    resp = await client.get(path, headers=auth["external"])
    text = await resp.text()
    assert resp.status == 200, text
    assert (await resp.json())["deidentified"] is True
    for identifier in ("Wang Fang", "HZ00012345", "1961"):
        assert identifier in home  # the search below looks for something that is there
        assert identifier not in text


async def test_external_member_may_neither_download_attachments_nor_change_the_case(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int]
) -> None:
    path = f"/api/cases/{ids['ready_case']}"
    home = await _ok(client, "GET", path, auth["coordinator"])
    download = await client.get(
        f"{path}/attachments/{home['attachments'][0]['id']}", headers=auth["external"]
    )
    await _assert_problem(download, 403)
    patch = await client.patch(
        path, headers=auth["external"], json={"clinical_question": "Changed from abroad?"}
    )
    await _assert_problem(patch, 403)
    case = await (await client.get(path, headers=auth["coordinator"])).json()
    assert case["clinical_question"].startswith("Stage IIIA EGFR+ adenocarcinoma")


async def test_specialist_gets_403_on_a_board_they_are_not_a_member_of(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    board = await _ok(
        client,
        "POST",
        "/api/boards",
        auth["coordinator"],
        NEW_BOARD,
    )
    specialist = auth["radiologist"]
    for path in (
        f"/api/boards/{board['id']}",
        f"/api/boards/{board['id']}/sessions",
        f"/api/sessions/{board['next_session']['id']}",
    ):
        await _assert_problem(await client.get(path, headers=specialist), 403)
    listed = await _ok(client, "GET", "/api/boards", specialist)
    assert board["id"] not in {b["id"] for b in listed["items"]}


async def test_records_user_gets_403_creating_a_board(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    resp = await client.post(
        "/api/boards",
        headers=auth["records"],
        json=NEW_BOARD,
    )
    await _assert_problem(resp, 403)
    assert len((await _ok(client, "GET", "/api/boards", auth["admin"]))["items"]) == 1


async def test_role_comes_from_the_user_record_not_the_token_claim(
    client: TestClient[Any, Any],
) -> None:
    services = client.app[SERVICES]
    async with services.db.read() as session:
        observer = (await session.exec(select(User).where(User.username == "observer"))).one()
    token, _ = services.tokens.issue("access", str(observer.id), 3600, role="admin")
    resp = await client.get("/api/audit/verify", headers={"Authorization": f"Bearer {token}"})
    await _assert_problem(resp, 403)


@pytest.mark.parametrize(("who", "status"), [(None, 401), ("observer", 403)])
async def test_caller_is_refused_before_the_body_is_read(
    client: TestClient[Any, Any], auth: Auth, who: str | None, status: int
) -> None:
    # A caller who may not use a route learns nothing from it, not even what body it takes.
    headers = auth[who] if who else {}
    resp = await client.post("/api/users", headers=headers, json={"username": 42})
    await _assert_problem(resp, status)


async def test_public_route_treats_a_disabled_users_token_as_anonymous(
    client: TestClient[Any, Any], auth: Auth
) -> None:
    # A browser still holding a disabled user's cookie must be able to log out and log in again.
    async with client.app[SERVICES].db.write() as session:
        observer = (await session.exec(select(User).where(User.username == "observer"))).one()
        observer.active = False
        session.add(observer)
    token = auth["observer"]["Authorization"].removeprefix("Bearer ")
    stale = {"Cookie": f"eboard_token={token}"}
    await _assert_problem(await client.get("/api/me", headers=stale), 401)
    logout = await client.post("/api/logout", headers=stale)
    assert logout.status == 204, await logout.text()
    login = await client.post(
        "/api/login", headers=stale, json={"username": "chair", "password": DEMO_PASSWORD}
    )
    assert login.status == 200, await login.text()


async def test_coordinator_of_another_institution_cannot_see_or_manage_its_boards(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int]
) -> None:
    made = await client.post(
        "/api/users",
        headers=auth["admin"],
        json={
            "username": "roc.coord",
            "password": "a-long-password",
            "role": "coordinator",
            "display_name": "ROC Coordinator",
            "institution_id": 2,
        },
    )
    assert made.status == 201, await made.text()
    login = await client.post(
        "/api/login", json={"username": "roc.coord", "password": "a-long-password"}
    )
    headers = {"Authorization": f"Bearer {(await login.json())['token']}"}
    listed = await (await client.get("/api/boards", headers=headers)).json()
    assert listed["items"] == []
    board = ids["board_id"]
    assert (await client.get(f"/api/boards/{board}", headers=headers)).status == 403
    sessions = await (
        await client.get(f"/api/boards/{board}/sessions", headers=auth["coordinator"])
    ).json()
    cancel = await client.post(
        f"/api/sessions/{sessions['items'][0]['id']}/cancel", headers=headers
    )
    assert cancel.status == 403
    case = await client.get(f"/api/cases/{ids['ready_case']}", headers=headers)
    assert case.status == 403
