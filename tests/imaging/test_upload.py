"""Uploading imaging to a case: DICOM files and zips in, every bad input refused whole."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pydicom
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.imaging.phantom import write_ct_series
from server.models import DicomInstance
from server.services import SERVICES


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    return [
        p.read_bytes() for p in write_ct_series(tmp_path_factory.mktemp("ct"), slices=3, size=64)
    ]


def _form(*files: tuple[str, bytes]) -> FormData:
    form = FormData()
    for name, data in files:
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return form


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def _stored(client: TestClient[Any, Any]) -> tuple[int, int]:
    services = client.app[SERVICES]
    async with services.db.read() as session:
        rows = (await session.exec(select(func.count()).select_from(DicomInstance))).one()
    files = (
        sum(1 for _ in services.dicom.root.rglob("*.dcm")) if services.dicom.root.exists() else 0
    )
    return rows, files


async def test_files_and_a_zip_are_stored_and_listed(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    ct: list[bytes],
) -> None:
    before = await _stored(client)
    url = f"/api/cases/{ids['preparing_case']}/imaging"
    resp = await client.post(
        url,
        data=_form(
            ("a.dcm", ct[0]),
            ("b.zip", _zip({"CT/1.dcm": ct[1], "CT/2.dcm": ct[2], "DICOMDIR": b"index"})),
        ),
        headers=auth["coordinator"],
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["files"] == 3
    # The board has an external member: each instance also gets its de-identified copy.
    assert await _stored(client) == (before[0] + 6, before[1] + 6)
    listed = await (await client.get(url, headers=auth["radiologist"])).json()
    assert [(s["instances"], s["modality"]) for s in listed["series"]] == [(3, "CT")]
    theirs = (await (await client.get(url, headers=auth["external"])).json())["series"]
    assert [(s["instances"], s["study_instance_uid"][:5]) for s in theirs] == [(3, "2.25.")]


def _truncated(ct: list[bytes]) -> bytes:
    return ct[0][: len(ct[0]) // 2]


def _no_pixels(ct: list[bytes]) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(ct[0]))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _odd_syntax(ct: list[bytes]) -> bytes:
    # Same length as explicit little endian's UID (with its padding), so offsets hold.
    native = b"1.2.840.10008.1.2.1\0"
    assert native in ct[0][:1000]
    return ct[0].replace(native, b"1.2.840.10008.1.2.99", 1)


def _bomb() -> bytes:
    return _zip({"zeros.dcm": b"\0" * (40 * 1024 * 1024)})


@pytest.mark.parametrize(
    ("make", "status", "fragment"),
    [
        (lambda ct: [("notes.txt", b"not a DICOM file at all")], 422, "is not a DICOM file"),
        (lambda ct: [("half.dcm", _truncated(ct))], 422, "truncated"),
        (lambda ct: [("nopix.dcm", _no_pixels(ct))], 422, "no pixel data"),
        (lambda ct: [("mpeg.dcm", _odd_syntax(ct))], 422, "transfer syntax"),
        (lambda ct: [("good.dcm", ct[0]), ("bad.txt", b"nope")], 422, "bad.txt"),
        (lambda ct: [("bomb.zip", _bomb())], 422, "zip bomb"),
        (lambda ct: [("up.zip", _zip({"../../etc/evil.dcm": ct[0]}))], 422, "'..'"),
        (lambda ct: [("abs.zip", _zip({"/etc/evil.dcm": ct[0]}))], 422, "absolute path"),
        (lambda ct: [("empty.zip", _zip({}))], 422, "contains no files"),
    ],
    ids=[
        "not-dicom",
        "truncated",
        "no-pixel-data",
        "unknown-syntax",
        "one-bad-of-two",
        "zip-bomb",
        "zip-dotdot",
        "zip-absolute",
        "zip-empty",
    ],
)
async def test_bad_upload_is_refused_naming_the_file_and_nothing_is_stored(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    ct: list[bytes],
    make: Any,
    status: int,
    fragment: str,
) -> None:
    before = await _stored(client)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form(*make(ct)),
        headers=auth["coordinator"],
    )
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["field"] == "file" and fragment in body["detail"]
    assert await _stored(client) == before


async def test_upload_over_the_size_limit_is_refused(
    settings: Any,
    aiohttp_client: Any,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    ct: list[bytes],
) -> None:
    from server.app import create_app
    from server.config import Settings

    small = Settings(**{**settings.__dict__, "max_imaging_upload_bytes": 5_000})
    client = await aiohttp_client(create_app(small))
    before = await _stored(client)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging",
        data=_form(("a.dcm", ct[0])),
        headers=auth["coordinator"],
    )
    assert resp.status == 413
    assert "limit of 5000 bytes" in (await resp.json())["detail"]
    assert await _stored(client) == before  # nothing of the refused upload was written
