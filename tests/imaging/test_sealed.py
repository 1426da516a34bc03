"""Sealed imaging: files and DICOM JSON encrypted at rest, frames read alone, files rebuilt byte
for byte, chunks bound to their place, keys rotated, instances stored before still read."""

from __future__ import annotations

import io
import json
import secrets
import shutil
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.app import create_app
from server.config import Settings
from server.errors import Invalid
from server.imaging.phantom import write_ct_series
from server.imaging.sealed import MAGIC, Seal
from server.keys import KeyRing
from server.models import DicomInstance
from server.services import SERVICES, Services


@pytest.fixture
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("keys"))


def _layout() -> tuple[bytes, list[list[list[int]]]]:
    """A file of 1000 random bytes with three frames: one of two runs, with gaps between."""
    data = secrets.token_bytes(1000)
    return data, [[[100, 50], [300, 20]], [[150, 100]], [[900, 100]]]


def test_each_frame_opens_alone_and_the_file_rebuilds_byte_for_byte(
    tmp_path: Path, ring: KeyRing
) -> None:
    seal = Seal(ring)
    data, runs = _layout()
    path = tmp_path / "f.dcm"
    index = seal.write(path, io.BytesIO(data), runs, "1.2.3", "f.dcm")
    assert (path.stat().st_mode & 0o777) == 0o600
    raw = path.read_bytes()
    assert raw.startswith(MAGIC) and data[100:150] not in raw and data[:100] not in raw
    for number, frame in enumerate(runs, start=1):
        [[offset, length]] = index[number - 1]
        expected = b"".join(data[o : o + n] for o, n in frame)
        opened = seal.open_frame(
            ring.active_field_key, raw[offset : offset + length], "1.2.3", number, 3
        )
        assert opened == expected
    assert seal.read(path, "1.2.3") == data
    assert list(tmp_path.iterdir()) == [path]  # nothing beside it


def test_a_chunk_in_another_place_or_file_does_not_open(tmp_path: Path, ring: KeyRing) -> None:
    seal = Seal(ring)
    data, runs = _layout()
    path = tmp_path / "f.dcm"
    index = seal.write(path, io.BytesIO(data), runs, "1.2.3", "f.dcm")
    raw = path.read_bytes()
    [[offset, length]] = index[0]
    chunk = raw[offset : offset + length]
    kid = ring.active_field_key
    with pytest.raises(ValueError, match="does not decrypt"):
        seal.open_frame(kid, chunk, "1.2.3", 2, 3)  # frame 1's bytes asked as frame 2
    with pytest.raises(ValueError, match="does not decrypt"):
        seal.open_frame(kid, chunk, "1.2.4", 1, 3)  # another instance's
    with pytest.raises(ValueError, match="does not decrypt"):
        seal.open_frame(kid, chunk, "1.2.3", 1, 2)  # a file cut to fewer chunks
    flipped = bytearray(raw)
    flipped[offset + 20] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="does not decrypt"):
        seal.read(path, "1.2.3")
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="does not decrypt"):
        seal.read(path, "1.2.4")  # the file of one instance put in the place of another


def test_dicom_json_is_sealed_to_its_instance(ring: KeyRing) -> None:
    seal = Seal(ring)
    blob = seal.seal_json(
        "1.2.3", {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Fang"}]}}
    )
    assert b"Wang" not in blob and blob.startswith(ring.active_field_key.encode() + b":")
    assert seal.open_json("1.2.3", blob)["00100010"]["Value"][0]["Alphabetic"] == "Wang^Fang"
    with pytest.raises(ValueError, match="does not decrypt"):
        seal.open_json("1.2.4", blob)


def test_overlapping_or_outlying_frames_are_refused_and_nothing_is_written(
    tmp_path: Path, ring: KeyRing
) -> None:
    seal = Seal(ring)
    data, _ = _layout()
    for runs, frame in (([[[0, 10]], [[5, 10]]], 2), ([[[0, 10]], [[995, 10]]], 2)):
        with pytest.raises(Invalid) as error:
            seal.write(tmp_path / "f.dcm", io.BytesIO(data), runs, "1.2.3", "odd.dcm")
        assert f"odd.dcm's frame {frame} " in error.value.detail
        assert list(tmp_path.iterdir()) == []


def test_after_rotation_old_files_open_and_new_ones_use_the_new_key(
    tmp_path: Path, ring: KeyRing
) -> None:
    data, runs = _layout()
    old = tmp_path / "old.dcm"
    Seal(ring).write(old, io.BytesIO(data), runs, "1.2.3", "old.dcm")
    rotated = ring.rotate()
    seal = Seal(rotated)
    assert seal.active_key != ring.active_field_key
    assert seal.read(old, "1.2.3") == data
    new = tmp_path / "new.dcm"
    seal.write(new, io.BytesIO(data), runs, "1.2.3", "new.dcm")
    assert seal.read(new, "1.2.3") == data
    with pytest.raises(ValueError, match="does not decrypt"):
        # The new key's file under the old key's id: no key opens another's file.
        raw = new.read_bytes().replace(
            bytes([len(seal.active_key)]) + seal.active_key.encode(),
            bytes([len(ring.active_field_key)]) + ring.active_field_key.encode(),
            1,
        )
        new.write_bytes(raw)
        seal.read(new, "1.2.3")


async def test_stored_instances_hold_no_identifier_and_read_back_as_uploaded(
    services: Services, ids: dict[str, int]
) -> None:
    """The demo CT as stored: files and DICOM JSON sealed; frames, files and metadata as sent."""
    store = services.dicom
    async with services.db.read() as session:
        instances = list(await session.exec(select(DicomInstance)))
    assert instances and all(i.file_key == services.keys.active_field_key for i in instances)
    for instance in instances:
        raw = (store.root / instance.path).read_bytes()
        assert raw.startswith(MAGIC) and b"Wang" not in raw and b"19610302" not in raw
        assert instance.dicom_json is None and instance.dicom_enc is not None
        assert b"Wang" not in instance.dicom_enc
        original = store.read_file(instance)
        ds = pydicom.dcmread(io.BytesIO(original))
        meta = store.metadata(instance)
        assert meta["00080018"]["Value"] == [instance.sop_uid]
        if "2.25." not in instance.sop_uid:  # an original, not a de-identified copy
            assert str(ds.PatientName) == "Wang^Fang"
            assert meta["00100010"]["Value"][0]["Alphabetic"] == "Wang^Fang"
        assert store.read_frame(instance, 1) == _first_frame(ds, original)


def _first_frame(ds: Any, original: bytes) -> bytes:
    """Frame 1's bytes as the file holds them (one fragment, or native pixels)."""
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    return bytes(ds.PixelData)


async def test_instances_stored_before_sealing_are_still_read(
    services: Services, tmp_path: Path
) -> None:
    """A row with no file key: its file and DICOM JSON read as they were stored."""
    [path] = write_ct_series(tmp_path / "ct", slices=1, size=32)
    data = path.read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    start = data.index(bytes(ds.PixelData))
    store = services.dicom
    target = store.root / "legacy" / "1.dcm"
    target.parent.mkdir(parents=True)
    shutil.copyfile(path, target)
    legacy = DicomInstance(
        series_id=1,
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        path="legacy/1.dcm",
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        rows=32,
        columns=32,
        frame_index=[[[start, 32 * 32 * 2]]],
        dicom_json={"00100020": {"vr": "LO", "Value": ["HZ1"]}},
    )
    assert store.read_file(legacy) == data
    assert store.read_frame(legacy, 1) == bytes(ds.PixelData)
    assert store.metadata(legacy) == {"00100020": {"vr": "LO", "Value": ["HZ1"]}}


async def test_frames_past_the_pixel_data_are_refused_and_nothing_is_stored(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    tmp_path: Path,
) -> None:
    """A native image claiming three frames with pixels for one: 422 naming the file (stored
    before, its frames 2 and 3 read past the pixel data)."""
    [path] = write_ct_series(tmp_path / "ct", slices=1, size=32)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 3
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    services = client.app[SERVICES]

    async def stored() -> tuple[int, int]:
        async with services.db.read() as session:
            rows = (await session.exec(select(func.count()).select_from(DicomInstance))).one()
        return rows, sum(1 for p in services.dicom.root.rglob("*") if p.is_file())

    before = await stored()
    form = FormData()
    form.add_field("file", out.getvalue(), filename="three.dcm")
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging", data=form, headers=auth["coordinator"]
    )
    assert resp.status == 422, await resp.text()
    body = await resp.json()
    assert body["errors"][0]["field"] == "file"
    assert "three.dcm's frame 2 overlaps" in body["detail"]
    assert await stored() == before


async def test_dicomweb_serves_the_upload_byte_for_byte_and_its_metadata(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    tmp_path: Path,
) -> None:
    paths = write_ct_series(tmp_path / "n", slices=2, size=64) + write_ct_series(
        tmp_path / "j", slices=2, size=64, jpegls=True
    )
    form = FormData()
    for path in paths:
        form.add_field("file", path.read_bytes(), filename=path.name)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/imaging", data=form, headers=auth["coordinator"]
    )
    assert resp.status == 201, await resp.text()
    for path in paths:
        ds = pydicom.dcmread(path)
        base = f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        resp = await client.get(
            f"{base}/instances/{ds.SOPInstanceUID}", headers=auth["coordinator"]
        )
        assert resp.status == 200
        boundary = resp.content_type and resp.headers["Content-Type"].rsplit("boundary=", 1)[1]
        body = await resp.read()
        part = body.split(b"\r\n\r\n", 1)[1].rsplit(f"\r\n--{boundary}--".encode(), 1)[0]
        assert part == path.read_bytes()
        resp = await client.get(f"{base}/metadata", headers=auth["coordinator"])
        mine = [m for m in await resp.json() if m["00080018"]["Value"] == [ds.SOPInstanceUID]]
        assert mine[0]["00100010"]["Value"] == [{"Alphabetic": "Wang^Fang"}]
        assert mine[0]["00100020"]["Value"] == ["HZ00012345"]


def _plain_row(db: sqlite3.Connection, sop: str, path: str, start: int, meta: Any) -> None:
    """An instance as revisions before 0007 stored it: plain file, plain DICOM JSON."""
    series = db.execute("SELECT min(id) FROM dicom_series").fetchone()[0]
    db.execute(
        "INSERT INTO dicom_instance (series_id, sop_uid, sop_class_uid, path, transfer_syntax, "
        "rows, columns, frames, frame_index, dicom_json) VALUES (?, ?, '1.2', ?, "
        "'1.2.840.10008.1.2.1', 32, 32, 1, ?, ?)",
        (series, sop, path, json.dumps([[[start, 32 * 32 * 2]]]), json.dumps(meta)),
    )


async def test_instances_stored_plain_are_sealed_at_start(
    data_dir: Path,
    settings: Settings,
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
    tmp_path: Path,
) -> None:
    [source] = write_ct_series(tmp_path / "ct", slices=1, size=32)
    data = source.read_bytes()
    ds = pydicom.dcmread(io.BytesIO(data))
    start = data.index(bytes(ds.PixelData))
    plain = data_dir / "imaging" / "old" / "1.dcm"
    plain.parent.mkdir()
    plain.write_bytes(data)
    meta = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Wang^Fang"}]}}
    with sqlite3.connect(data_dir / "eboard.sqlite3") as db:
        _plain_row(db, str(ds.SOPInstanceUID), "old/1.dcm", start, meta)
        _plain_row(db, "1.2.3.999", "old/gone.dcm", start, meta)  # its file is lost

    client = await aiohttp_client(create_app(settings))  # starting seals what it can

    store = client.app[SERVICES].dicom
    async with client.app[SERVICES].db.read() as session:
        sealed = (
            await session.exec(
                select(DicomInstance).where(DicomInstance.sop_uid == str(ds.SOPInstanceUID))
            )
        ).one()
        lost = (
            await session.exec(select(DicomInstance).where(DicomInstance.sop_uid == "1.2.3.999"))
        ).one()
    assert sealed.file_key is not None and sealed.dicom_json is None
    assert not plain.exists() and list(plain.parent.iterdir()) == [store.root / sealed.path]
    assert b"Wang" not in (store.root / sealed.path).read_bytes()
    assert store.read_file(sealed) == data
    assert store.read_frame(sealed, 1) == bytes(ds.PixelData)
    assert store.metadata(sealed) == meta
    assert lost.file_key is None and lost.dicom_json == meta  # left as it was; the server runs
    await client.close()
    # The lost one's; the sealed one's plain JSON is gone from the database and its WAL.
    assert _database_bytes(data_dir).count(b"Wang^Fang") == 1


def _database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("eboard.sqlite3*"))
