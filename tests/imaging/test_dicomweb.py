"""Our /dicom-web/ against a third-party DICOMweb client (dicomweb-client), on a real port."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pydicom
import pytest
from aiohttp.test_utils import TestServer
from dicomweb_client.api import DICOMwebClient
from requests.exceptions import HTTPError

from server.imaging.phantom import write_ct_series


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("phantom")
    native = write_ct_series(root / "native", slices=6, size=128)
    study = str(pydicom.dcmread(native[0]).StudyInstanceUID)
    jls = write_ct_series(
        root / "jls", slices=6, size=128, jpegls=True, study_uid=study, series_number=2
    )
    return {"native": native, "jls": jls}


def _client(server: TestServer, headers: dict[str, str]) -> DICOMwebClient:
    return DICOMwebClient(str(server.make_url("/dicom-web")), headers=headers)


async def _attach(server: TestServer, headers: dict[str, str], case: int, study: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url(f"/api/cases/{case}/studies"),
            headers=headers,
            json={
                "study_instance_uid": study,
                "description": "CT",
                "modality": "CT",
                "study_date": "2026-11-20",
            },
        ) as resp:
            assert resp.status == 201, await resp.text()


async def test_dicomweb_client_stores_searches_and_retrieves_identical_frames(
    server: TestServer,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    series: dict[str, list[Path]],
) -> None:
    files = [pydicom.dcmread(p) for p in series["native"] + series["jls"]]
    study = str(files[0].StudyInstanceUID)
    await _attach(server, auth["coordinator"], ids["preparing_case"], study)
    client = _client(server, auth["coordinator"])

    stored = await asyncio.to_thread(client.store_instances, files)
    assert len(stored.ReferencedSOPSequence) == 12

    found = await asyncio.to_thread(
        client.search_for_studies, search_filters={"StudyInstanceUID": study}
    )
    assert len(found) == 1
    assert found[0]["00201206"]["Value"] == [2] and found[0]["00201208"]["Value"] == [12]
    assert found[0]["00080061"]["Value"] == ["CT"]
    listed = await asyncio.to_thread(client.search_for_series, study)
    assert sorted(s["00200011"]["Value"][0] for s in listed) == [1, 2]

    for kind, paths in series.items():
        source = [pydicom.dcmread(p) for p in paths]
        uid = str(source[0].SeriesInstanceUID)
        metadata = await asyncio.to_thread(client.retrieve_series_metadata, study, uid)
        assert len(metadata) == 6
        bulk = metadata[0]["7FE00010"]["BulkDataURI"]
        assert bulk.startswith(str(server.make_url("/dicom-web/studies/")))
        instances = await asyncio.to_thread(client.search_for_instances, study, uid)
        assert len(instances) == 6
        ds = source[2]
        sop = str(ds.SOPInstanceUID)
        if kind == "native":
            frames = await asyncio.to_thread(client.retrieve_instance_frames, study, uid, sop, [1])
            assert frames[0] == ds.PixelData
        else:
            as_stored = await asyncio.to_thread(
                client.retrieve_instance_frames,
                study,
                uid,
                sop,
                [1],
                media_types=(("image/jls", "1.2.840.10008.1.2.4.80"),),
            )
            fragment = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
            assert as_stored[0] == fragment
            decoded = await asyncio.to_thread(
                client.retrieve_instance_frames,
                study,
                uid,
                sop,
                [1],
                media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
            )
            assert decoded[0] == ds.pixel_array.astype("<u2").tobytes()
        whole = await asyncio.to_thread(client.retrieve_instance, study, uid, sop)
        assert whole.SOPInstanceUID == sop and whole.PixelData == ds.PixelData


async def test_stow_of_a_study_no_case_references_is_refused(
    server: TestServer, auth: dict[str, dict[str, str]], series: dict[str, list[Path]]
) -> None:
    client = _client(server, auth["coordinator"])
    with pytest.raises(HTTPError) as caught:
        await asyncio.to_thread(client.store_instances, [pydicom.dcmread(series["native"][0])])
    assert caught.value.response.status_code == 404


async def test_imaging_a_user_may_not_see_is_not_found(
    server: TestServer,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    series: dict[str, list[Path]],
) -> None:
    ds = pydicom.dcmread(series["native"][0])
    study, uid, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    await _attach(server, auth["coordinator"], ids["preparing_case"], study)
    await asyncio.to_thread(_client(server, auth["coordinator"]).store_instances, [ds])
    base = f"/dicom-web/studies/{study}/series/{uid}"
    async with aiohttp.ClientSession() as http:
        for who, status in (("external", 404), ("records", 200), (None, 401)):
            headers = auth[who] if who else {}
            async with http.get(server.make_url(f"{base}/metadata"), headers=headers) as resp:
                assert resp.status == status, (who, await resp.text())
                if status == 200:
                    assert resp.headers["Content-Type"] == "application/dicom+json"
        async with http.get(
            server.make_url("/dicom-web/studies?PatientName=x"), headers=auth["coordinator"]
        ) as resp:
            assert resp.status == 422
            assert (await resp.json())["errors"][0]["field"] == "PatientName"
        async with http.get(
            server.make_url("/dicom-web/studies?limit=lots"), headers=auth["coordinator"]
        ) as resp:
            assert resp.status == 422
        async with http.get(
            server.make_url(f"{base}/instances/{sop}/frames/2"), headers=auth["coordinator"]
        ) as resp:
            assert resp.status == 422
            assert (await resp.json())["errors"][0]["field"] == "frames"
        async with http.get(
            server.make_url(f"{base}/instances/{sop}/frames/1"),
            headers={**auth["coordinator"], "Accept": "image/jp2"},
        ) as resp:
            assert resp.status == 200  # native data is native whatever is asked
