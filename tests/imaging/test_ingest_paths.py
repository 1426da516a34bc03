"""Where ingest puts files: UIDs inside an upload never become paths, every path stays in the
store, and a refused or failed ingest leaves nothing behind (issue #13, the headline hole)."""

from __future__ import annotations

import io
import re
import stat
from pathlib import Path
from typing import Any

import pydicom
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import col, select

from server.imaging.phantom import write_ct_series
from server.models import DicomInstance, DicomSeries, ImagingStudy
from server.services import SERVICES

Client = TestClient[Any, Any]
# These tests make files with UIDs that are not UIDs on purpose; pydicom warns as it writes them.
pytestmark = pytest.mark.filterwarnings("ignore:.*VR UI:UserWarning")


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("ct")
    return [p.read_bytes() for p in write_ct_series(folder, slices=2, size=32)]


@pytest.fixture(scope="module")
def jls(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("jls")
    return write_ct_series(folder, slices=1, size=32, jpegls=True)[0].read_bytes()


def _with(data: bytes, **changes: str) -> bytes:
    """``data`` saved again with attributes changed."""
    if "TransferSyntaxUID" in changes:
        # pydicom writes no file with an invalid syntax: swap the bytes in place (same length,
        # so every offset holds).
        native = b"1.2.840.10008.1.2.1\0"
        value = changes.pop("TransferSyntaxUID").encode()
        assert len(value) == len(native) and native in data[:1000]
        data = data.replace(native, value, 1)
        if not changes:
            return data
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _form(*files: tuple[str, bytes]) -> FormData:
    form = FormData()
    for name, data in files:
        form.add_field("file", data, filename=name, content_type="application/dicom")
    return form


def _disk(client: Client) -> dict[str, bytes]:
    """Every file under the data dir's imaging store and spool, with its bytes."""
    services = client.app[SERVICES]
    out: dict[str, bytes] = {}
    for root in (services.dicom.root, services.settings.data_dir / "spool"):
        if root.exists():
            for path in root.rglob("*"):
                if path.is_file():
                    out[str(path)] = path.read_bytes()
    return out


async def _rows(client: Client) -> int:
    async with client.app[SERVICES].db.read() as session:
        return (await session.exec(select(func.count()).select_from(DicomInstance))).one()


async def _deidentified_copy(client: Client, case_id: int) -> tuple[DicomInstance, str]:
    """One instance of the case's de-identified copy, and its series UID."""
    async with client.app[SERVICES].db.read() as session:
        row = (
            await session.exec(
                select(DicomInstance, DicomSeries)
                .where(
                    DicomInstance.series_id == DicomSeries.id,
                    DicomSeries.study_id == ImagingStudy.id,
                    ImagingStudy.case_id == case_id,
                    col(ImagingStudy.deidentified).is_(True),
                )
                .order_by(col(DicomInstance.id))
            )
        ).first()
    assert row is not None, "the demo's ready case has a de-identified copy"
    return row[0], row[1].series_uid


async def test_a_sop_uid_climbing_into_another_series_overwrites_nothing(
    client: Client, auth: dict[str, dict[str, str]], ids: dict[str, int], ct: list[bytes]
) -> None:
    # The reviewer's attack: a SOPInstanceUID that climbs out of its series' folder into the
    # folder of an external member's de-identified copy, to replace it with the original.
    copy, copy_series = await _deidentified_copy(client, ids["ready_case"])
    target = client.app[SERVICES].dicom.root / copy.path
    kept = target.read_bytes()
    before_disk, before_rows = _disk(client), await _rows(client)
    evil = _with(ct[0], SOPInstanceUID=f"../{copy_series}/{copy.sop_uid}")
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form(("evil.dcm", evil)),
        headers=auth["coordinator"],
    )
    assert resp.status == 422, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["field"] == "file"
    assert "evil.dcm" in body["detail"] and "SOPInstanceUID" in body["detail"]
    assert target.read_bytes() == kept
    assert _disk(client) == before_disk and await _rows(client) == before_rows


@pytest.mark.parametrize(
    ("attribute", "value", "problem"),
    [
        ("SOPInstanceUID", "../1.2.3/4.5", "only digits and dots"),
        ("SeriesInstanceUID", "1.2/3", "only digits and dots"),
        ("StudyInstanceUID", "1." + "2" * 63, "65 characters long"),
        ("SOPInstanceUID", "1.2.03.4", "leading zero"),
        ("SeriesInstanceUID", "1.2.abc", "only digits and dots"),
        ("SOPClassUID", "1..2", "empty component"),
        ("TransferSyntaxUID", "1.2.840.10008.1.2/10", "only digits and dots"),
    ],
    ids=["dotdot", "slash", "65-chars", "leading-zero", "letters", "empty-component", "syntax"],
)
async def test_a_file_whose_uid_is_not_a_uid_is_refused_naming_it_and_nothing_is_written(
    client: Client,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    ct: list[bytes],
    attribute: str,
    value: str,
    problem: str,
) -> None:
    before_disk, before_rows = _disk(client), await _rows(client)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form(("good.dcm", ct[1]), ("odd.dcm", _with(ct[0], **{attribute: value}))),
        headers=auth["coordinator"],
    )
    assert resp.status == 422, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["field"] == "file"
    assert "odd.dcm" in body["detail"] and attribute in body["detail"]
    assert problem in body["detail"]
    assert _disk(client) == before_disk and await _rows(client) == before_rows


async def test_a_uid_that_makes_the_path_absolute_writes_nowhere(
    client: Client,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    ct: list[bytes],
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    before_disk, before_rows = _disk(client), await _rows(client)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form(("abs.dcm", _with(ct[0], SeriesInstanceUID=str(outside)))),
        headers=auth["coordinator"],
    )
    assert resp.status == 422, await resp.text()
    assert "SeriesInstanceUID" in (await resp.json())["detail"]
    assert not outside.exists()
    assert _disk(client) == before_disk and await _rows(client) == before_rows


async def test_stow_refuses_a_climbing_uid_too(
    client: Client, auth: dict[str, dict[str, str]], ct: list[bytes]
) -> None:
    before_disk, before_rows = _disk(client), await _rows(client)
    evil = _with(ct[0], SOPInstanceUID="../../../keys")
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + evil + b"\r\n--B--\r\n"
    resp = await client.post(
        "/dicom-web/studies",
        data=body,
        headers={
            **auth["coordinator"],
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=B',
        },
    )
    assert resp.status == 422, await resp.text()
    assert "SOPInstanceUID" in (await resp.json())["detail"]
    assert _disk(client) == before_disk and await _rows(client) == before_rows


async def test_stored_files_have_server_made_names_readable_only_by_the_server(
    client: Client, auth: dict[str, dict[str, str]], ids: dict[str, int], ct: list[bytes]
) -> None:
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form(("a.dcm", ct[0]), ("b.dcm", ct[1])),
        headers=auth["coordinator"],
    )
    assert resp.status == 201, await resp.text()
    services = client.app[SERVICES]
    async with services.db.read() as session:
        paths = list(await session.exec(select(DicomInstance.path)))
    root = services.dicom.root
    assert len(paths) >= 4  # two originals and their de-identified copies, at least
    for relative in paths:
        assert re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{32}\.dcm", relative), relative
        path = root / relative
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    spool = services.settings.data_dir / "spool"
    assert not spool.exists() or not any(spool.iterdir())  # the upload's temporaries are gone


async def test_an_ingest_failing_after_writing_removes_every_file_it_wrote(
    client: Client,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    ct: list[bytes],
    jls: bytes,
) -> None:
    # Parses, but its fragments cannot be mapped to its frames: found only once the first
    # file (and its copy) is on disk.
    unmappable = _with(jls, NumberOfFrames="2")
    before_disk, before_rows = _disk(client), await _rows(client)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form(("a.dcm", ct[0]), ("multi.dcm", unmappable)),
        headers=auth["coordinator"],
    )
    assert resp.status == 422, await resp.text()
    assert "fragments cannot be mapped" in (await resp.json())["detail"]
    assert _disk(client) == before_disk and await _rows(client) == before_rows


async def test_rows_with_paths_of_the_old_layout_are_still_served(
    client: Client, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    services = client.app[SERVICES]
    copy, series_uid = await _deidentified_copy(client, ids["ready_case"])
    old = Path(series_uid) / f"{copy.sop_uid}.dcm"  # how files were named before issue #13
    (services.dicom.root / old).parent.mkdir(exist_ok=True)
    (services.dicom.root / copy.path).rename(services.dicom.root / old)
    async with services.db.write() as session:
        row = await session.get(DicomInstance, copy.id)
        assert row is not None
        row.path = str(old)
        session.add(row)
    moved = await _deidentified_copy(client, ids["ready_case"])
    assert services.dicom.read_file(moved[0])[128:132] == b"DICM"


async def test_a_row_whose_path_leaves_the_store_is_never_read(
    client: Client, ids: dict[str, int]
) -> None:
    from server.imaging.store import OutsideStore

    services = client.app[SERVICES]
    copy, _ = await _deidentified_copy(client, ids["ready_case"])
    for escape in ("../keys.json", str(services.settings.data_dir / "keys.json")):
        tampered = DicomInstance(**{**copy.model_dump(), "path": escape})
        with pytest.raises(OutsideStore):
            services.dicom.read_file(tampered)
        with pytest.raises(OutsideStore):
            services.dicom.read_frame(tampered, 1)
