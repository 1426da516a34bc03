"""External participants reach only the de-identified copy of a case's imaging."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from dicomweb_client.api import DICOMwebClient
from requests.exceptions import HTTPError
from sqlmodel import col, select

from server.models import DicomInstance, DicomSeries, ImagingStudy
from server.services import SERVICES

IDENTIFIERS = (
    "Wang^Fang",
    "Wang Fang",
    "HZ00012345",
    "19610302",
    "1961-03-02",
    "Hangzhou First Hospital",
    "Zhang^Wei",
)


async def _originals(server: TestServer, case_id: int) -> tuple[str, list[str]]:
    async with server.app[SERVICES].db.read() as session:
        study = (
            await session.exec(
                select(ImagingStudy).where(
                    ImagingStudy.case_id == case_id, col(ImagingStudy.deidentified).is_(False)
                )
            )
        ).one()
        uids = [study.study_instance_uid]
        for series in await session.exec(
            select(DicomSeries).where(DicomSeries.study_id == study.id)
        ):
            uids.append(series.series_uid)
            uids += [
                i.sop_uid
                for i in await session.exec(
                    select(DicomInstance).where(DicomInstance.series_id == series.id)
                )
            ]
    return study.study_instance_uid, uids


async def test_external_member_sees_only_the_deidentified_copy_with_identical_pixels(
    server: TestServer,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
) -> None:
    original_study, original_uids = await _originals(server, ids["ready_case"])
    url = str(server.make_url("/dicom-web"))
    external = DICOMwebClient(url, headers=auth["external"])
    internal = DICOMwebClient(url, headers=auth["radiologist"])

    studies = await asyncio.to_thread(external.search_for_studies)
    assert len(studies) == 1
    copy_study = studies[0]["0020000D"]["Value"][0]
    assert copy_study != original_study and copy_study.startswith("2.25.")
    assert studies[0]["00100020"]["Value"][0].startswith("HZ-")  # the case number
    assert "00100030" not in studies[0] or "Value" not in studies[0]["00100030"]
    received = json.dumps(studies)
    for series in await asyncio.to_thread(external.search_for_series, copy_study):
        uid = series["0020000E"]["Value"][0]
        metadata = await asyncio.to_thread(external.retrieve_series_metadata, copy_study, uid)
        received += json.dumps(metadata)
        first = metadata[0]
        assert first["00120062"]["Value"] == ["YES"]
        sop = first["00080018"]["Value"][0]
        copy_frame = await asyncio.to_thread(
            external.retrieve_instance_frames,
            copy_study,
            uid,
            sop,
            [1],
            media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
        )
        instance = await asyncio.to_thread(external.retrieve_instance, copy_study, uid, sop)
        received += str(instance)
        # Same pixels as the original slice with the same instance number.
        number = first["00200013"]["Value"][0]
        internal_series = await asyncio.to_thread(internal.search_for_series, original_study)
        for s in internal_series:
            if s["0008103E"]["Value"][0].endswith("(JPEG-LS)") == first.get("0008103E", {}).get(
                "Value", [""]
            )[0].endswith("(JPEG-LS)"):
                iuid = s["0020000E"]["Value"][0]
        originals = await asyncio.to_thread(internal.search_for_instances, original_study, iuid)
        osop = next(
            i["00080018"]["Value"][0] for i in originals if i["00200013"]["Value"][0] == number
        )
        original_frame = await asyncio.to_thread(
            internal.retrieve_instance_frames,
            original_study,
            iuid,
            osop,
            [1],
            media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),),
        )
        assert copy_frame == original_frame
    for secret in (*IDENTIFIERS, *original_uids):
        assert secret not in received, secret

    with pytest_raises_http(404):
        await asyncio.to_thread(external.search_for_series, original_study)
    with pytest_raises_http(404):
        await asyncio.to_thread(internal.search_for_series, copy_study)
    internal_studies = await asyncio.to_thread(internal.search_for_studies)
    assert [s["0020000D"]["Value"][0] for s in internal_studies] == [original_study]

    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.make_url(f"/api/cases/{ids['ready_case']}/imaging"), headers=auth["external"]
        ) as resp:
            listed = await resp.json()
    assert listed["series"] and all(s["study_instance_uid"] == copy_study for s in listed["series"])


class pytest_raises_http:  # noqa: N801
    """Asserts a dicomweb-client call fails with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, tb: Any) -> bool:
        assert isinstance(error, HTTPError), f"expected HTTP {self.status}, got {error!r}"
        assert error.response.status_code == self.status
        return True
