"""A coordinator clears a burned-in series: until then external participants cannot reach it,
afterwards they get its de-identified copy."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pydicom
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import func
from sqlmodel import col, select

from server.imaging.phantom import write_ct_series
from server.models import AuditRecord, DicomInstance, DicomSeries, User
from server.services import SERVICES

Auth = dict[str, dict[str, str]]
REASON = {"reason": "checked all 3 slices: only the scanner's scale bar is burned in"}
FRAMES_AS_STORED = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
IDENTIFIERS = ("Wang^Fang", "Wang Fang", "HZ00012345", "19610302", "Zhang^Wei", "Hangzhou")


@dataclass(frozen=True)
class Burned:
    """A burned-in series as uploaded: its files and original UIDs."""

    files: list[bytes]
    study: str
    series: str
    sops: list[str]


@pytest.fixture(scope="module")
def burned(tmp_path_factory: pytest.TempPathFactory) -> Burned:
    files = []
    for path in write_ct_series(tmp_path_factory.mktemp("burned"), slices=3, size=64):
        ds = pydicom.dcmread(path)
        ds.BurnedInAnnotation = "YES"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append(out.getvalue())
    first = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    return Burned(
        files,
        str(first[0].StudyInstanceUID),
        str(first[0].SeriesInstanceUID),
        [str(d.SOPInstanceUID) for d in first],
    )


def _form(files: list[bytes]) -> FormData:
    form = FormData()
    for i, data in enumerate(files):
        form.add_field("file", data, filename=f"{i}.dcm", content_type="application/dicom")
    return form


async def _upload(
    client: TestClient[Any, Any], auth: Auth, case_id: int, files: list[bytes]
) -> str:
    resp = await client.post(
        f"/api/cases/{case_id}/imaging", data=_form(files), headers=auth["coordinator"]
    )
    assert resp.status == 201, await resp.text()
    stored = (await resp.json())["series"]
    assert len(stored) == 1  # a burned-in series gets no copy at ingest
    alias: str = stored[0]["alias"]
    return alias


async def _listed(
    client: TestClient[Any, Any], headers: dict[str, str], case_id: int
) -> dict[str, dict[str, Any]]:
    resp = await client.get(f"/api/cases/{case_id}/imaging", headers=headers)
    assert resp.status == 200, await resp.text()
    return {s["alias"]: s for s in (await resp.json())["series"]}


async def _clear(
    client: TestClient[Any, Any], headers: dict[str, str], case_id: int, alias: str, body: Any
) -> Any:
    return await client.post(
        f"/api/cases/{case_id}/imaging/{alias}/clearance", json=body, headers=headers
    )


async def _state(client: TestClient[Any, Any]) -> tuple[Any, ...]:
    """Everything a clearance could change: rows, files, clearances, audit records."""
    services = client.app[SERVICES]
    async with services.db.read() as session:
        instances = (await session.exec(select(func.count()).select_from(DicomInstance))).one()
        audit = (await session.exec(select(func.count()).select_from(AuditRecord))).one()
        clearances = list(
            await session.exec(
                select(DicomSeries.id, DicomSeries.cleared_at, DicomSeries.cleared_by).order_by(
                    col(DicomSeries.id)
                )
            )
        )
    files = sorted(str(p) for p in services.dicom.root.rglob("*.dcm"))
    return instances, audit, clearances, files


def _copy_uids(client: TestClient[Any, Any], board_id: int, *uids: str) -> list[str]:
    deid = client.app[SERVICES].dicom.deidentifier(board_id)
    return [str(deid.uid(u)) for u in uids]


async def test_external_participant_gets_a_burned_in_series_only_once_it_is_cleared(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], burned: Burned
) -> None:
    case = ids["ready_case"]
    alias = await _upload(client, auth, case, burned.files)
    external = auth["external"]
    copy_study, copy_series, *copy_sops = _copy_uids(
        client, ids["board_id"], burned.study, burned.series, *burned.sops
    )

    row = (await _listed(client, auth["radiologist"], case))[alias]
    assert (row["burned_in"], row["withheld"], row["cleared_at"]) == (True, True, None)
    assert alias not in await _listed(client, external, case)
    studies = await (await client.get("/dicom-web/studies", headers=external)).json()
    assert copy_study not in json.dumps(studies)
    original = f"/dicom-web/studies/{burned.study}/series/{burned.series}"
    assert (await client.get(f"{original}/metadata", headers=external)).status == 404
    assert (await client.get(f"{original}/instances", headers=external)).status == 404
    copy = f"/dicom-web/studies/{copy_study}/series/{copy_series}"
    assert (await client.get(f"{copy}/metadata", headers=external)).status == 404

    resp = await _clear(client, auth["coordinator"], case, alias, REASON)
    assert resp.status == 201, await resp.text()
    cleared = await resp.json()
    assert (cleared["withheld"], cleared["copied_instances"]) == (False, 3)

    async with client.app[SERVICES].db.read() as session:
        coordinator = (await session.exec(select(User).where(User.username == "coordinator"))).one()
        audit = (
            await session.exec(
                select(AuditRecord).where(AuditRecord.action == "case.imaging_clearance")
            )
        ).one()
    assert (audit.actor_id, audit.detail["alias"]) == (coordinator.id, alias)
    row = (await _listed(client, auth["radiologist"], case))[alias]
    assert row["withheld"] is False and row["cleared_at"] == cleared["cleared_at"]
    assert (row["cleared_by"], row["clearance_reason"]) == (coordinator.id, REASON["reason"])

    theirs = (await _listed(client, external, case))[alias]
    assert (theirs["series_instance_uid"], theirs["instances"]) == (copy_series, 3)
    assert (theirs["cleared_by"], theirs["clearance_reason"]) == (None, None)
    studies = await (await client.get("/dicom-web/studies", headers=external)).json()
    assert copy_study in json.dumps(studies)
    series = await (
        await client.get(f"/dicom-web/studies/{copy_study}/series", headers=external)
    ).json()
    assert [s["0020000E"]["Value"][0] for s in series] == [copy_series]
    resp = await client.get(f"{copy}/metadata", headers=external)
    assert resp.status == 200, await resp.text()
    metadata = await resp.json()
    assert sorted(m["00080018"]["Value"][0] for m in metadata) == sorted(copy_sops)
    assert {m["00120062"]["Value"][0] for m in metadata} == {"YES"}
    received = json.dumps(metadata) + json.dumps(theirs) + json.dumps(studies)
    for secret in (*IDENTIFIERS, burned.study, burned.series, *burned.sops):
        assert secret not in received, secret
    frame = await client.get(
        f"{copy}/instances/{copy_sops[0]}/frames/1", headers={**external, **FRAMES_AS_STORED}
    )
    assert frame.status == 200 and len(await frame.read()) > 64 * 64 * 2
    # Internal staff still reach the original, never the copy.
    assert (await client.get(f"{original}/metadata", headers=auth["radiologist"])).status == 200
    assert (await client.get(f"{copy}/metadata", headers=auth["radiologist"])).status == 404


async def test_specialist_may_not_clear_a_series(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], burned: Burned
) -> None:
    case = ids["ready_case"]
    alias = await _upload(client, auth, case, burned.files)
    before = await _state(client)
    for who in ("radiologist", "chair", "external"):
        resp = await _clear(client, auth[who], case, alias, REASON)
        assert resp.status == 403, await resp.text()
    assert await _state(client) == before
    assert alias not in await _listed(client, auth["external"], case)


async def _copy_alias(client: TestClient[Any, Any], case_id: int) -> str:
    """The real alias of one of the ready case's de-identified copies (never listed)."""
    async with client.app[SERVICES].db.read() as session:
        alias = (
            await session.exec(select(DicomSeries.alias).where(col(DicomSeries.source_id) > 0))
        ).first()
    assert alias is not None
    return alias


async def _listed_alias(client: TestClient[Any, Any], auth: Auth, case_id: int) -> str:
    """A series of the case that is not burned in (the demo CT)."""
    return next(
        a
        for a, s in (await _listed(client, auth["radiologist"], case_id)).items()
        if not s["burned_in"]
    )


BAD = [
    ("unknown alias", "no-such-alias", REASON, 404, "alias"),
    ("alias with odd characters", "a%20b", REASON, 404, "alias"),
    ("series without burned-in annotation", "<plain>", REASON, 409, "alias"),
    ("a de-identified copy", "<copy>", REASON, 409, "alias"),
    ("another case's series", "<other case>", REASON, 404, "alias"),
    ("no reason", "<burned>", {}, 422, "reason"),
    ("blank reason", "<burned>", {"reason": "   "}, 422, "reason"),
    ("reason too long", "<burned>", {"reason": "x" * 501}, 422, "reason"),
    ("reason not text", "<burned>", {"reason": ["checked"]}, 422, "reason"),
]


@pytest.mark.parametrize(
    ("alias", "body", "status", "field"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
async def test_bad_clearance_is_refused_naming_the_field_and_changes_nothing(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    burned: Burned,
    alias: str,
    body: Any,
    status: int,
    field: str,
) -> None:
    case = ids["ready_case"]
    aliases = {"<burned>": await _upload(client, auth, case, burned.files)}
    aliases["<plain>"] = await _listed_alias(client, auth, case)
    aliases["<copy>"] = await _copy_alias(client, case)
    aliases["<other case>"] = await _upload(client, auth, ids["preparing_case"], _other(burned))
    before = await _state(client)
    resp = await _clear(client, auth["coordinator"], case, aliases.get(alias, alias), body)
    assert resp.status == status, await resp.text()
    problem = await resp.json()
    assert problem["errors"][0]["field"] == field, problem
    assert await _state(client) == before


def _other(burned: Burned) -> list[bytes]:
    """The burned-in series again under new UIDs, for another case."""
    out = []
    study, series = generate_uid(), generate_uid()
    for data in burned.files:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


async def test_a_series_is_cleared_once(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], burned: Burned
) -> None:
    case = ids["ready_case"]
    alias = await _upload(client, auth, case, burned.files)
    first = await _clear(client, auth["coordinator"], case, alias, REASON)
    assert first.status == 201, await first.text()
    before = await _state(client)
    again = await _clear(client, auth["admin"], case, alias, REASON)
    assert again.status == 409
    assert (await again.json())["errors"][0]["field"] == "alias"
    assert await _state(client) == before


async def test_a_copy_that_fails_halfway_leaves_neither_files_nor_a_clearance(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], burned: Burned
) -> None:
    case = ids["ready_case"]
    alias = await _upload(client, auth, case, burned.files)
    services = client.app[SERVICES]
    async with services.db.read() as session:
        last = (
            await session.exec(
                select(DicomInstance).where(DicomInstance.sop_uid == burned.sops[-1])
            )
        ).one()
    (services.dicom.root / last.path).unlink()  # the first two slices copy, the third cannot
    before = await _state(client)
    resp = await _clear(client, auth["coordinator"], case, alias, REASON)
    assert resp.status == 500
    assert await _state(client) == before
    assert alias not in await _listed(client, auth["external"], case)
