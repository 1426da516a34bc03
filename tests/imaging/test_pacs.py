"""PACS import: a study pulled from a real Orthanc over DICOMweb into a case, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydicom.encaps import generate_frames
from sqlalchemy import func
from sqlmodel import col, select

from server.app import create_app
from server.config import Settings
from server.imaging.phantom import write_ct_series
from server.models import AuditRecord, DicomInstance
from server.services import SERVICES
from tests.bench.orthanc import Orthanc, free_port

Auth = dict[str, dict[str, str]]
AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@dataclass(frozen=True)
class PacsStudy:
    """A running Orthanc holding one study of two series (native and JPEG-LS)."""

    dicomweb_url: str
    study_uid: str
    files: list[Path]


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PacsStudy]:
    missing = Orthanc.available()
    assert missing is None, f"{missing}; Orthanc is installed by `make test`"
    root = tmp_path_factory.mktemp("pacs-study")
    native = write_ct_series(root / "native", slices=4, size=64)
    study = str(pydicom.dcmread(native[0]).StudyInstanceUID)
    jls = write_ct_series(
        root / "jls", slices=4, size=64, jpegls=True, study_uid=study, series_number=2
    )
    with Orthanc() as orthanc:
        orthanc.upload(native + jls)
        yield PacsStudy(orthanc.dicomweb_url, study, native + jls)


@pytest.fixture
def pacs_url(pacs: PacsStudy, request: pytest.FixtureRequest) -> str:
    """Orthanc's DICOMweb root, or (parametrized indirectly) another path of the same Orthanc."""
    path = getattr(request, "param", "/dicom-web")
    return pacs.dicomweb_url.removesuffix("/dicom-web") + path


@pytest.fixture
def app(settings: Settings, pacs_url: str) -> web.Application:
    return create_app(replace(settings, pacs_url=pacs_url))


async def _import(
    client: TestClient[Any, Any], headers: dict[str, str], case: int, study: str
) -> aiohttp.ClientResponse:
    return await client.post(
        f"/api/cases/{case}/imaging/import", headers=headers, json={"study_instance_uid": study}
    )


async def _problem(resp: aiohttp.ClientResponse, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    return str((await resp.json())["detail"])


async def _instances(client: TestClient[Any, Any]) -> int:
    async with client.app[SERVICES].db.read() as session:
        return int((await session.exec(select(func.count()).select_from(DicomInstance))).one())


async def _frame(client: TestClient[Any, Any], headers: dict[str, str], ds: Any) -> bytes:
    path = (
        f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )
    resp = await client.get(path, headers={**headers, "Accept": AS_STORED})
    assert resp.status == 200, await resp.text()
    reader = aiohttp.MultipartReader.from_response(resp)
    part = await reader.next()
    assert isinstance(part, aiohttp.BodyPartReader)
    return bytes(await part.read())


async def test_study_imported_from_orthanc_serves_frames_identical_to_the_source(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], pacs: PacsStudy
) -> None:
    case = ids["preparing_case"]
    resp = await _import(client, auth["radiologist"], case, pacs.study_uid)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["study_instance_uid"] == pacs.study_uid and body["retrieved"] == 8
    assert [s["instances"] for s in body["series"]] == [4, 4]

    sops = [str(pydicom.dcmread(p).SOPInstanceUID) for p in pacs.files]
    async with client.app[SERVICES].db.read() as session:
        syntaxes = list(
            await session.exec(
                select(DicomInstance.transfer_syntax).where(col(DicomInstance.sop_uid).in_(sops))
            )
        )
        audit = (
            await session.exec(
                select(AuditRecord).where(
                    AuditRecord.action == "case.imaging_import",
                    AuditRecord.target_id == str(case),
                )
            )
        ).all()
    # Every instance stored once; JPEG-LS as the PACS holds it, not decoded on the way.
    assert sorted(syntaxes) == ["1.2.840.10008.1.2.1"] * 4 + ["1.2.840.10008.1.2.4.80"] * 4
    assert len(audit) == 1 and audit[0].detail["instances"] == 8
    assert audit[0].detail["pacs"] == pacs.dicomweb_url

    for path in pacs.files:
        ds = pydicom.dcmread(path)
        source = (
            ds.PixelData
            if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            else next(generate_frames(ds.PixelData, number_of_frames=1))
        )
        assert await _frame(client, auth["radiologist"], ds) == source


async def test_importing_the_same_study_again_stores_nothing_twice(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], pacs: PacsStudy
) -> None:
    case = ids["preparing_case"]
    first = await _import(client, auth["coordinator"], case, pacs.study_uid)
    assert first.status == 200, await first.text()
    count = await _instances(client)
    again = await _import(client, auth["coordinator"], case, pacs.study_uid)
    assert again.status == 200, await again.text()
    assert await _instances(client) == count


async def test_a_study_already_on_another_case_is_refused_with_409(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], pacs: PacsStudy
) -> None:
    resp = await _import(client, auth["coordinator"], ids["preparing_case"], pacs.study_uid)
    assert resp.status == 200, await resp.text()
    count = await _instances(client)
    other = await _import(client, auth["coordinator"], ids["requested_case"], pacs.study_uid)
    assert "belongs to another case" in await _problem(other, 409)
    assert await _instances(client) == count


async def test_unknown_study_is_404_naming_the_uid(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], pacs: PacsStudy
) -> None:
    before = await _instances(client)
    missing = "1.2.826.0.1.3680043.10.1447.999"
    resp = await _import(client, auth["coordinator"], ids["preparing_case"], missing)
    detail = await _problem(resp, 404)
    assert missing in detail and pacs.dicomweb_url in detail
    assert await _instances(client) == before


@pytest.mark.parametrize("pacs_url", [""], ids=["unset"])
async def test_import_without_a_pacs_configured_is_409_naming_the_setting(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int]
) -> None:
    resp = await _import(client, auth["coordinator"], ids["preparing_case"], "1.2.3")
    assert "pacs-url" in await _problem(resp, 409)


@pytest.mark.parametrize("pacs_url", [f"http://127.0.0.1:{free_port()}/dicom-web"], ids=["down"])
async def test_unreachable_pacs_is_502_naming_its_url(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], pacs_url: str
) -> None:
    before = await _instances(client)
    resp = await _import(client, auth["coordinator"], ids["preparing_case"], "1.2.3")
    assert pacs_url in await _problem(resp, 502)
    assert await _instances(client) == before


@pytest.mark.parametrize(
    "pacs_url", ["http://importer:s3cret@127.0.0.1:9/dicom-web"], ids=["credentials"]
)
async def test_pacs_credentials_never_reach_the_error_message(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int]
) -> None:
    resp = await _import(client, auth["coordinator"], ids["preparing_case"], "1.2.3")
    detail = await _problem(resp, 502)
    assert "http://127.0.0.1:9/dicom-web" in detail and "s3cret" not in detail


@pytest.mark.parametrize("pacs_url", ["/not-dicom-web"], indirect=True, ids=["wrong-root"])
async def test_a_server_that_is_no_dicomweb_root_is_502(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], pacs: PacsStudy, pacs_url: str
) -> None:
    resp = await _import(client, auth["coordinator"], ids["preparing_case"], pacs.study_uid)
    assert f"the PACS at {pacs_url} answered the search with 404" in await _problem(resp, 502)


async def test_external_participant_may_not_import_into_the_case(
    client: TestClient[Any, Any], auth: Auth, ids: dict[str, int], pacs: PacsStudy
) -> None:
    resp = await _import(client, auth["external"], ids["ready_case"], pacs.study_uid)
    await _problem(resp, 403)
    malformed = await _import(client, auth["coordinator"], ids["ready_case"], "1.2.x")
    assert (await malformed.json())["errors"][0]["field"] == "study_instance_uid"
    assert malformed.status == 422
