"""What one DICOMweb request may cost and carry: frame lists named once and capped, multipart
replies streamed part by part, no patient identifier in a QIDO URL, and no-store on replies."""

from __future__ import annotations

import io
import tracemalloc
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import pydicom
import pytest
from aiohttp import ClientResponse, FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.imaging.dicomweb import MAX_FRAMES
from server.imaging.phantom import write_ct_series
from server.models import AuditRecord
from server.services import Services

Auth = dict[str, dict[str, str]]
AS_STORED = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
FRAMES = 24  # of 512 × 512 × 16 bits: 12 MiB of pixel data in one instance
# Less than the 12 MiB reply itself. Measured: about 3 MiB (a megabyte of frames being read, one
# being sent, the socket's buffers), up to 7 on a loaded machine; built in memory, 32 MiB.
PEAK_BYTES = 10 << 20


@dataclass(frozen=True)
class MultiFrame:
    """One stored multi-frame instance: where it is and its frames as sent."""

    base: str  # /dicom-web/studies/{study}/series/{series}
    sop: str
    frames: list[bytes]

    @property
    def instance(self) -> str:
        return f"{self.base}/instances/{self.sop}"


@pytest.fixture(scope="module")
def multiframe_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes]]:
    slices = [
        pydicom.dcmread(p)
        for p in write_ct_series(tmp_path_factory.mktemp("mf"), slices=FRAMES, size=512)
    ]
    ds = slices[0]
    frames = [bytes(s.PixelData) for s in slices]
    ds.NumberOfFrames = FRAMES
    ds.PixelData = b"".join(frames)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), frames


async def _store(
    client: TestClient[Any, Any], auth: Auth, case_id: int, files: list[bytes]
) -> None:
    form = FormData()
    for n, data in enumerate(files):
        form.add_field("file", data, filename=f"{n}.dcm", content_type="application/dicom")
    resp = await client.post(
        f"/api/cases/{case_id}/imaging", headers=auth["coordinator"], data=form
    )
    assert resp.status == 201, await resp.text()


@pytest.fixture
async def multiframe(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    multiframe_file: tuple[bytes, list[bytes]],
) -> MultiFrame:
    data, frames = multiframe_file
    await _store(client, auth, ids["preparing_case"], [data])
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    base = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    return MultiFrame(base, str(ds.SOPInstanceUID), frames)


def _parts(resp: ClientResponse, body: bytes) -> list[bytes]:
    """The payloads of a multipart/related reply, parsed as a mail parser would."""
    head = f"Content-Type: {resp.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    assert message.is_multipart()
    return [part.get_payload(decode=True) for part in message.iter_parts()]


async def _problem(resp: ClientResponse, status: int, field: str) -> str:
    assert resp.status == status, await resp.text()
    problem = await resp.json()
    assert problem["errors"][0]["field"] == field, problem
    detail: str = problem["detail"]
    return detail


@pytest.mark.parametrize(
    ("frames", "says"),
    [
        (",".join(["1"] * 200), "names frame 1 more than once"),  # the 105 MB reply of the review
        ("3,1,3", "names frame 3 more than once"),
        ("1,01", "names frame 1 more than once"),
        ("0", f"has frames 1 to {FRAMES}"),
        (str(FRAMES + 1), f"has frames 1 to {FRAMES}"),
        ("99999999999", "is not a comma-separated list of numbers"),
        ("1,,2", "is not a comma-separated list of numbers"),
        ("1;2", "is not a comma-separated list of numbers"),
        ("-1", "is not a comma-separated list of numbers"),
        ("one", "is not a comma-separated list of numbers"),
        (",".join(["1"] * (MAX_FRAMES + 1)), f"at most {MAX_FRAMES}"),
    ],
    ids=[
        "200 repeats",
        "a repeat",
        "a repeat with a leading zero",
        "zero",
        "past the end",
        "too big a number",
        "empty item",
        "semicolon",
        "negative",
        "a word",
        "too many",
    ],
)
async def test_a_bad_frame_list_is_refused_naming_frames(
    client: TestClient[Any, Any], auth: Auth, multiframe: MultiFrame, frames: str, says: str
) -> None:
    headers = {**auth["radiologist"], **AS_STORED}
    resp = await client.get(f"{multiframe.instance}/frames/{frames}", headers=headers)
    assert says in await _problem(resp, 422, "frames")
    # Nothing is held against the next request.
    ok = await client.get(f"{multiframe.instance}/frames/2", headers=headers)
    assert ok.status == 200
    assert _parts(ok, await ok.read()) == [multiframe.frames[1]]


async def test_every_frame_of_an_instance_comes_in_the_order_asked_and_is_streamed(
    client: TestClient[Any, Any], auth: Auth, multiframe: MultiFrame
) -> None:
    order = list(range(FRAMES, 0, -1))
    resp = await client.get(
        f"{multiframe.instance}/frames/{','.join(map(str, order))}",
        headers={**auth["radiologist"], **AS_STORED},
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in resp.headers
    assert resp.headers["Cache-Control"] == "no-store"
    assert _parts(resp, await resp.read()) == [multiframe.frames[n - 1] for n in order]


async def _peak_while_reading(client: TestClient[Any, Any], path: str, headers: Any) -> int:
    """Bytes the process allocated at most above where it started while ``path`` was read
    (the server and this client share the process; the client keeps no more than a chunk)."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        resp = await client.get(path, headers=headers)
        assert resp.status == 200, await resp.text()
        received = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > 12 << 20  # the whole reply went through
    return peak - start


async def test_a_whole_instance_of_frames_costs_memory_of_a_few_frames_not_the_reply(
    client: TestClient[Any, Any], auth: Auth, multiframe: MultiFrame
) -> None:
    every = ",".join(str(n) for n in range(1, FRAMES + 1))
    peak = await _peak_while_reading(
        client, f"{multiframe.instance}/frames/{every}", {**auth["radiologist"], **AS_STORED}
    )
    assert peak < PEAK_BYTES, f"{peak / 2**20:.1f} MiB"


async def test_a_series_is_retrieved_one_file_at_a_time(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    tmp_path: Path,
) -> None:
    paths = write_ct_series(tmp_path, slices=FRAMES, size=512)
    await _store(client, auth, ids["preparing_case"], [p.read_bytes() for p in paths])
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    base = f"/dicom-web/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
    peak = await _peak_while_reading(client, base, auth["radiologist"])
    assert peak < PEAK_BYTES, f"{peak / 2**20:.1f} MiB"
    resp = await client.get(base, headers=auth["radiologist"])
    parts = _parts(resp, await resp.read())
    got = sorted(str(pydicom.dcmread(io.BytesIO(p)).SOPInstanceUID) for p in parts)
    assert got == sorted(str(pydicom.dcmread(p).SOPInstanceUID) for p in paths)


async def _audit_records(services: Services) -> int:
    async with services.db.read() as session:
        return (await session.exec(select(func.count()).select_from(AuditRecord))).one()


@pytest.mark.parametrize(
    "key",
    ["PatientID", "00100020", "PatientName", "00100010", "PatientBirthDate", "00100030"],
)
async def test_qido_refuses_patient_identifiers_in_the_url(
    client: TestClient[Any, Any], auth: Auth, services: Services, key: str
) -> None:
    before = await _audit_records(services)
    resp = await client.get(f"/dicom-web/studies?{key}=HZ00012345", headers=auth["radiologist"])
    assert "POST /api/cases/lookup" in await _problem(resp, 422, key)
    assert await _audit_records(services) == before  # no search was made, none recorded
    ok = await client.get("/dicom-web/studies", headers=auth["radiologist"])
    assert ok.status == 200 and len(await ok.json()) == 1


async def test_every_dicomweb_reply_says_no_store(
    client: TestClient[Any, Any], auth: Auth, multiframe: MultiFrame
) -> None:
    study = multiframe.base.split("/")[3]
    paths = [
        "/dicom-web/studies",
        f"/dicom-web/studies/{study}/series",
        f"{multiframe.base}/instances",
        f"{multiframe.base}/metadata",
        f"{multiframe.instance}/metadata",
        f"{multiframe.instance}/frames/1",
        f"{multiframe.instance}/frames/1,2,3,4,5,6",
        multiframe.instance,
        multiframe.base,
    ]
    for path in paths:
        resp = await client.get(path, headers={**auth["radiologist"], **AS_STORED})
        await resp.read()
        assert resp.status == 200, path
        assert resp.headers.get("Cache-Control") == "no-store", path
