"""Frames asked for as JPEG-LS lossless: transcoded once from whatever was stored (native, RLE),
kept sealed, answered from the kept copy next time, the pixels bit-exact after decoding; a
syntax we cannot send is refused (406, naming it) and nothing is kept."""

from __future__ import annotations

import io
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from aiohttp import ClientResponse, FormData
from aiohttp.test_utils import TestClient
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import JPEGLSLossless, RLELossless

from server.imaging import transcode
from server.imaging.phantom import write_ct_series

Auth = dict[str, dict[str, str]]
JLS = "1.2.840.10008.1.2.4.80"
AS_JLS = {"Accept": f'multipart/related; type="image/jls"; transfer-syntax={JLS}'}
SIZE = 128


def _signed(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The slice stored as signed Hounsfield units (Pixel Representation 1, no intercept)."""
    hu = ds.pixel_array.astype(np.int16) - 1024
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.PixelData = hu.astype("<i2").tobytes()
    return ds


def _files(folder: Path, kind: str) -> list[bytes]:
    out = []
    for path in write_ct_series(folder / kind, slices=3, size=SIZE):
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = kind
        if kind.startswith("signed"):
            _signed(ds)
        if kind.endswith("rle"):
            ds.compress(RLELossless)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    root = tmp_path_factory.mktemp("transcode")
    return {kind: _files(root, kind) for kind in ("unsigned", "signed", "signed-rle")}


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


def _url(data: bytes) -> str:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return (
        f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/frames/1"
    )


async def _parts(resp: ClientResponse) -> list[tuple[str, bytes]]:
    assert resp.status == 200, await resp.text()
    head = f"Content-Type: {resp.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + await resp.read())
    return [
        (
            f"{p.get_content_type()}; transfer-syntax={p.get_param('transfer-syntax')}",
            p.get_payload(decode=True),
        )
        for p in message.iter_parts()
    ]


def _decoded(codestream: bytes, ds: pydicom.Dataset) -> np.ndarray:
    """The JPEG-LS codestream decoded as a viewer would, with the instance's pixel module."""
    array, _ = get_decoder(JPEGLSLossless).as_array(
        encapsulate([codestream]),
        rows=ds.Rows,
        columns=ds.Columns,
        samples_per_pixel=1,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=ds.BitsAllocated,
        bits_stored=ds.BitsStored,
        pixel_representation=ds.PixelRepresentation,
        number_of_frames=1,
        pixel_keyword="PixelData",
    )
    return array


def _kept(data_dir: Path) -> list[Path]:
    root = data_dir / "imaging" / "jls"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("kind", ["unsigned", "signed", "signed-rle"])
async def test_frames_go_as_jpeg_ls_with_the_stored_pixels_bit_for_bit(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    sources: dict[str, list[bytes]],
    kind: str,
) -> None:
    files = sources[kind]
    await _store(client, auth, ids["preparing_case"], files)
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data))
        resp = await client.get(_url(data), headers={**auth["radiologist"], **AS_JLS})
        [(content_type, codestream)] = await _parts(resp)
        assert content_type == f"image/jls; transfer-syntax={JLS}"
        assert codestream[:4] == b"\xff\xd8\xff\xf7"  # SOI, then SOF55 (JPEG-LS)
        expected = ds.pixel_array
        assert expected.dtype == (np.int16 if kind.startswith("signed") else np.uint16)
        assert expected.min() < 0 if kind.startswith("signed") else expected.min() >= 0
        decoded = _decoded(codestream, ds)
        assert decoded.dtype == expected.dtype
        assert np.array_equal(decoded, expected)
        assert len(codestream) < expected.nbytes


async def test_a_frame_is_transcoded_once_and_kept_sealed(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    sources: dict[str, list[bytes]],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    encode = transcode.to_jpeg_ls

    def counted(data: bytes | bytearray, syntax: str, pixels: transcode.PixelModule) -> bytes:
        calls.append(syntax)
        return encode(data, syntax, pixels)

    monkeypatch.setattr(transcode, "to_jpeg_ls", counted)
    data = sources["unsigned"][0]
    await _store(client, auth, ids["preparing_case"], [data])
    before = _kept(data_dir)
    headers = {**auth["radiologist"], **AS_JLS}
    [(_, first)] = await _parts(await client.get(_url(data), headers=headers))
    assert calls == ["1.2.840.10008.1.2.1"]
    [kept] = [p for p in _kept(data_dir) if p not in before]
    # At rest it is sealed: neither the codestream nor its markers are there in the clear.
    blob = kept.read_bytes()
    assert first not in blob and first[:64] not in blob and b"\xff\xd8\xff\xf7" not in blob
    assert kept.stat().st_mode & 0o777 == 0o600
    [(_, again)] = await _parts(await client.get(_url(data), headers=headers))
    assert again == first and calls == ["1.2.840.10008.1.2.1"]  # answered from the kept copy


@pytest.mark.parametrize(
    ("accept", "named"),
    [
        (
            "multipart/related; type=application/octet-stream; "
            "transfer-syntax=1.2.840.10008.1.2.4.201",
            "transfer-syntax=1.2.840.10008.1.2.4.201",
        ),  # HTJ2K: not offered
        ('multipart/related; type="image/jp2"', "type=image/jp2"),
        ("multipart/related; transfer-syntax=made.up", "transfer-syntax=made.up"),
    ],
    ids=["htj2k", "jpeg 2000 type", "not a syntax"],
)
async def test_a_syntax_we_cannot_send_is_refused_naming_it(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    sources: dict[str, list[bytes]],
    data_dir: Path,
    accept: str,
    named: str,
) -> None:
    data = sources["signed"][0]
    await _store(client, auth, ids["preparing_case"], [data])
    before = _kept(data_dir)
    resp = await client.get(_url(data), headers={**auth["radiologist"], "Accept": accept})
    assert resp.status == 406, await resp.text()
    detail = (await resp.json())["detail"]
    assert named in detail and JLS in detail
    assert _kept(data_dir) == before


async def test_a_frame_that_cannot_be_transcoded_is_refused_and_nothing_kept(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    sources: dict[str, list[bytes]],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(data: bytes | bytearray, syntax: str, pixels: transcode.PixelModule) -> bytes:
        raise ValueError("the encoder refused it")

    monkeypatch.setattr(transcode, "to_jpeg_ls", broken)
    data = sources["unsigned"][1]
    await _store(client, auth, ids["preparing_case"], [data])
    before = _kept(data_dir)
    resp = await client.get(_url(data), headers={**auth["radiologist"], **AS_JLS})
    assert resp.status == 406, await resp.text()
    assert "the encoder refused it" in (await resp.json())["detail"]
    assert _kept(data_dir) == before
    monkeypatch.undo()
    # The next request makes it (nothing half-made was left to stand in its way).
    [(content_type, _)] = await _parts(
        await client.get(_url(data), headers={**auth["radiologist"], **AS_JLS})
    )
    assert content_type.startswith("image/jls") and len(_kept(data_dir)) == len(before) + 1


async def test_a_viewer_asking_jpeg_ls_or_as_stored_gets_a_stored_jpeg_ls_frame_as_stored(
    client: TestClient[Any, Any],
    auth: Auth,
    ids: dict[str, int],
    sources: dict[str, list[bytes]],
) -> None:
    ds = pydicom.dcmread(io.BytesIO(sources["unsigned"][2]))
    ds.compress(JPEGLSLossless)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    await _store(client, auth, ids["preparing_case"], [data])
    accept = (
        f'multipart/related; type="image/jls"; transfer-syntax={JLS}, '
        'multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0.5'
    )
    resp = await client.get(_url(data), headers={**auth["radiologist"], "Accept": accept})
    [(content_type, codestream)] = await _parts(resp)
    fragment = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    assert content_type == f"image/jls; transfer-syntax={JLS}" and codestream == fragment
