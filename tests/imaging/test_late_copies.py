"""A board that gains an external member after its imaging was stored: the new member gets
de-identified copies of it, study by study, whole or not at all."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pydicom
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import col, select

from server.imaging.phantom import write_ct_series
from server.models import AuditRecord, DicomInstance, DicomSeries, ImagingStudy, Institution, User
from server.services import SERVICES

Auth = dict[str, dict[str, str]]
IDENTIFIERS = ("Wang^Fang", "Wang Fang", "HZ00012345", "19610302", "Zhang^Wei", "Hangzhou")
BOARD = {
    "name": "Breast MDT",
    "tumor_site": "breast",
    "timezone": "Asia/Shanghai",
    "rrule": "FREQ=WEEKLY;BYDAY=WE",
    "start_time": "12:00",
}
CASE = {
    "patient": {
        "name": "Qian Hui",
        "mrn": "HZ00055555",
        "birth_date": "1968-04-09",
        "sex": "female",
    },
    "clinical_question": "Neoadjuvant chemotherapy or surgery first?",
    "clinical_summary": "Female, 58; 2.3 cm invasive ductal carcinoma, left breast.",
    "summary_language": "en",
    "consent_external": True,
    "consent_date": "2026-11-01",
}


async def _ok(client: TestClient[Any, Any], method: str, path: str, headers: Any, **kw: Any) -> Any:
    resp = await client.request(method, path, headers=headers, **kw)
    assert resp.status in (200, 201), f"{method} {path}: {resp.status} {await resp.text()}"
    return await resp.json()


def _series(folder: Path, *, burned_in: bool = False) -> list[bytes]:
    out = []
    for path in write_ct_series(folder, slices=3, size=64):
        ds = pydicom.dcmread(path)
        if burned_in:
            ds.BurnedInAnnotation = "YES"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


async def _upload(client: TestClient[Any, Any], auth: Auth, case: int, files: list[bytes]) -> str:
    form = FormData()
    for i, data in enumerate(files):
        form.add_field("file", data, filename=f"{i}.dcm", content_type="application/dicom")
    stored = await _ok(client, "POST", f"/api/cases/{case}/imaging", auth["coordinator"], data=form)
    alias: str = stored["series"][0]["alias"]
    return alias


async def _board_with_imaging(
    client: TestClient[Any, Any], auth: Auth, tmp_path: Path
) -> tuple[int, int, str, str]:
    """A new board with only home members, one consented case, a CT and a burned-in series;
    returns (board, case, CT alias, burned-in alias)."""
    coord = auth["coordinator"]
    board = (await _ok(client, "POST", "/api/boards", coord, json=BOARD))["id"]
    case = (await _ok(client, "POST", "/api/cases", coord, json={**CASE, "board_id": board}))["id"]
    ct = await _upload(client, auth, case, _series(tmp_path / "ct"))
    burned = await _upload(client, auth, case, _series(tmp_path / "sc", burned_in=True))
    return board, case, ct, burned


async def _user_id(client: TestClient[Any, Any], username: str) -> int:
    async with client.app[SERVICES].db.read() as session:
        user = (await session.exec(select(User).where(User.username == username))).one()
    assert user.id is not None
    return user.id


async def _copies(client: TestClient[Any, Any]) -> tuple[int, int]:
    """(copy instances indexed, files on disk)."""
    services = client.app[SERVICES]
    async with services.db.read() as session:
        rows = (
            await session.exec(
                select(func.count())
                .select_from(DicomInstance)
                .where(
                    DicomInstance.series_id == DicomSeries.id,
                    col(DicomSeries.source_id).is_not(None),
                )
            )
        ).one()
    return rows, sum(1 for _ in services.dicom.root.rglob("*.dcm"))


async def _listed(client: TestClient[Any, Any], headers: Any, case: int) -> dict[str, Any]:
    return {
        s["alias"]: s
        for s in (await _ok(client, "GET", f"/api/cases/{case}/imaging", headers))["series"]
    }


async def test_external_member_added_after_ingest_gets_copies_of_the_boards_imaging(
    client: TestClient[Any, Any], auth: Auth, tmp_path: Path
) -> None:
    board, case, ct, burned = await _board_with_imaging(client, auth, tmp_path)
    before = await _copies(client)
    external = await _user_id(client, "external")

    added = await _ok(
        client,
        "POST",
        f"/api/boards/{board}/members",
        auth["coordinator"],
        json={"user_id": external, "role": "specialist"},
    )
    # The CT is copied; the burned-in series stays withheld.
    assert added["copies"] == {"instances": 3, "failed_studies": []}
    assert await _copies(client) == (before[0] + 3, before[1] + 3)
    theirs = await _listed(client, auth["external"], case)
    assert list(theirs) == [ct]
    study_uid = theirs[ct]["study_instance_uid"]
    assert study_uid.startswith("2.25.")
    metadata = await _ok(
        client,
        "GET",
        f"/dicom-web/studies/{study_uid}/series/{theirs[ct]['series_instance_uid']}/metadata",
        auth["external"],
    )
    assert len(metadata) == 3
    assert metadata[0]["00100010"]["Value"][0]["Alphabetic"].startswith("HZ-")  # case number
    async with client.app[SERVICES].db.read() as session:
        originals = list(
            await session.exec(
                select(DicomInstance.sop_uid).where(
                    DicomInstance.series_id == DicomSeries.id,
                    DicomSeries.study_id == ImagingStudy.id,
                    ImagingStudy.case_id == case,
                    col(ImagingStudy.deidentified).is_(False),
                )
            )
        )
        audit = list(
            await session.exec(select(AuditRecord).where(AuditRecord.action == "case.imaging_copy"))
        )
    assert len(originals) == 6
    received = json.dumps(metadata) + json.dumps(theirs)
    for secret in (*IDENTIFIERS, *originals):
        assert secret not in received, secret
    assert [(a.target_id, a.detail["instances"]) for a in audit] == [(str(case), 3)]

    # The burned-in series, cleared now, reaches them too.
    cleared = await _ok(
        client,
        "POST",
        f"/api/cases/{case}/imaging/{burned}/clearance",
        auth["coordinator"],
        json={"reason": "checked: a ruler only"},
    )
    assert cleared["copied_instances"] == 3
    assert sorted(await _listed(client, auth["external"], case)) == sorted([ct, burned])


async def test_a_second_external_member_makes_no_second_copy(
    client: TestClient[Any, Any], auth: Auth, tmp_path: Path
) -> None:
    board, _, _, _ = await _board_with_imaging(client, auth, tmp_path)
    coord = auth["coordinator"]
    first = {"user_id": await _user_id(client, "external"), "role": "specialist"}
    await _ok(client, "POST", f"/api/boards/{board}/members", coord, json=first)
    copied = await _copies(client)
    async with client.app[SERVICES].db.read() as session:
        roc = (await session.exec(select(Institution).where(Institution.code == "ROC"))).one()
    other = await _ok(
        client,
        "POST",
        "/api/users",
        auth["admin"],
        json={
            "username": "dr.rossi",
            "password": "a-long-password",
            "display_name": "Dr. Rossi",
            "role": "specialist",
            "institution_id": roc.id,
            "specialty": "surgery",
        },
    )
    second = {"user_id": other["id"], "role": "specialist"}
    added = await _ok(client, "POST", f"/api/boards/{board}/members", coord, json=second)
    assert added["copies"] == {"instances": 0, "failed_studies": []}
    assert await _copies(client) == copied


async def test_home_member_added_makes_no_copies(
    client: TestClient[Any, Any], auth: Auth, tmp_path: Path
) -> None:
    board, _, _, _ = await _board_with_imaging(client, auth, tmp_path)
    before = await _copies(client)
    member = {"user_id": await _user_id(client, "radiologist"), "role": "specialist"}
    added = await _ok(
        client, "POST", f"/api/boards/{board}/members", auth["coordinator"], json=member
    )
    assert added["copies"]["instances"] == 0
    assert await _copies(client) == before


async def test_accepted_invitation_gives_the_new_member_copies(
    client: TestClient[Any, Any], auth: Auth, tmp_path: Path
) -> None:
    board, case, ct, _ = await _board_with_imaging(client, auth, tmp_path)
    async with client.app[SERVICES].db.read() as session:
        roc = (await session.exec(select(Institution).where(Institution.code == "ROC"))).one()
    invitation = await _ok(
        client,
        "POST",
        f"/api/boards/{board}/invitations",
        auth["coordinator"],
        json={"institution_id": roc.id, "specialty": "radiology"},
    )
    login = await _ok(
        client,
        "POST",
        "/api/invitations/accept",
        {},
        json={
            "token": invitation["token"],
            "board_id": board,
            "username": "dr.invited",
            "password": "a-long-password",
            "display_name": "Dr. Invited",
        },
    )
    theirs = await _listed(client, {"Authorization": f"Bearer {login['token']}"}, case)
    assert list(theirs) == [ct] and theirs[ct]["instances"] == 3
    assert theirs[ct]["study_instance_uid"].startswith("2.25.")


async def test_a_study_that_cannot_be_copied_is_left_out_whole_and_the_others_are_kept(
    client: TestClient[Any, Any], auth: Auth, tmp_path: Path
) -> None:
    board, case, ct, _ = await _board_with_imaging(client, auth, tmp_path)
    broken = await _upload(client, auth, case, _series(tmp_path / "broken"))
    services = client.app[SERVICES]
    async with services.db.read() as session:
        series = (await session.exec(select(DicomSeries).where(DicomSeries.alias == broken))).one()
        last = list(
            await session.exec(
                select(DicomInstance)
                .where(DicomInstance.series_id == series.id)
                .order_by(col(DicomInstance.instance_number))
            )
        )[-1]
    (services.dicom.root / last.path).unlink()  # its first two slices copy, the third cannot
    before = await _copies(client)

    member = {"user_id": await _user_id(client, "external"), "role": "specialist"}
    added = await _ok(
        client, "POST", f"/api/boards/{board}/members", auth["coordinator"], json=member
    )
    assert added["copies"] == {"instances": 3, "failed_studies": [series.study_id]}
    assert await _copies(client) == (before[0] + 3, before[1] + 3)
    assert list(await _listed(client, auth["external"], case)) == [ct]
