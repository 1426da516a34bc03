"""Imaging a user may not see answers exactly as imaging that does not exist: the same status
and the same body but for the UID they sent, on every QIDO and WADO route."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp.test_utils import TestClient
from sqlmodel import col, select

from server.models import BoardMember, DicomInstance, DicomSeries, ImagingStudy, User
from server.services import Services

Auth = dict[str, dict[str, str]]
AS_STORED = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
# {study}, {series} and {sop} are filled in; QIDO's study search takes its UID as a filter.
ROUTES = [
    "/dicom-web/studies?StudyInstanceUID={study}",
    "/dicom-web/studies/{study}/series",
    "/dicom-web/studies/{study}/series/{series}",
    "/dicom-web/studies/{study}/series/{series}/instances",
    "/dicom-web/studies/{study}/series/{series}/metadata",
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}",
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/metadata",
    "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1",
]


async def _uids(services: Services, case_id: int, *, copy: bool) -> dict[str, str]:
    """The study, series and SOP Instance UIDs of one instance of the case's original imaging,
    or of its de-identified copy."""
    async with services.db.read() as session:
        study, series, instance = (
            await session.exec(
                select(ImagingStudy, DicomSeries, DicomInstance)
                .where(
                    ImagingStudy.case_id == case_id,
                    ImagingStudy.deidentified == copy,
                    DicomSeries.study_id == ImagingStudy.id,
                    DicomInstance.series_id == DicomSeries.id,
                )
                .order_by(col(DicomInstance.id))
            )
        ).first()
    return {"study": study.study_instance_uid, "series": series.series_uid, "sop": instance.sop_uid}


def _random_uid() -> str:
    return f"2.25.{secrets.randbits(120)}"


async def _answer(client: TestClient[Any, Any], path: str, headers: Any) -> tuple[int, bytes]:
    resp = await client.get(path, headers={**headers, **AS_STORED})
    return resp.status, await resp.read()


async def _assert_same_as_absent(
    client: TestClient[Any, Any], headers: Any, asked: dict[str, str], unseen: set[str]
) -> None:
    """Every route answers ``asked`` as it answers the same request with each UID in
    ``unseen`` replaced by a UID that exists nowhere."""
    absent = {k: (_random_uid() if v in unseen else v) for k, v in asked.items()}
    for route in ROUTES:
        if not any(v in route.format(**asked) for v in unseen):
            continue  # the route does not name a hidden UID
        status, body = await _answer(client, route.format(**asked), headers)
        status_absent, body_absent = await _answer(client, route.format(**absent), headers)
        for key, value in asked.items():
            body = body.replace(value.encode(), key.encode())
            body_absent = body_absent.replace(absent[key].encode(), key.encode())
        assert (status, body) == (status_absent, body_absent), route
        assert status in (200, 404), (route, status, body)
        if status == 200:
            assert body == b"[]", route  # QIDO's search: nothing found, as for any unknown UID


async def test_an_external_member_asking_for_the_original_gets_what_an_unknown_uid_gets(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    original = await _uids(services, ids["ready_case"], copy=False)
    copy = await _uids(services, ids["ready_case"], copy=True)
    external = auth["external"]
    # The copy itself is served: the comparisons below are about the original only.
    status, _ = await _answer(client, ROUTES[-1].format(**copy), external)
    assert status == 200
    await _assert_same_as_absent(client, external, original, set(original.values()))
    # The copy's study with the original's series; the copy's series with an original SOP.
    mixed = {**copy, "series": original["series"]}
    await _assert_same_as_absent(client, external, mixed, {original["series"]})
    mixed = {**copy, "sop": original["sop"]}
    await _assert_same_as_absent(client, external, mixed, {original["sop"]})


async def test_staff_asking_for_an_external_copy_get_what_an_unknown_uid_gets(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    copy = await _uids(services, ids["ready_case"], copy=True)
    await _assert_same_as_absent(client, auth["radiologist"], copy, set(copy.values()))


async def test_another_boards_imaging_is_as_absent_for_a_specialist_not_on_it(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    original = await _uids(services, ids["ready_case"], copy=False)
    member = await client.get(ROUTES[-1].format(**original), headers=auth["radiologist"])
    assert member.status == 200
    async with services.db.write() as session:  # no route removes a member yet
        user = (await session.exec(select(User).where(User.username == "radiologist"))).one()
        for member in await session.exec(select(BoardMember).where(BoardMember.user_id == user.id)):
            await session.delete(member)
    await _assert_same_as_absent(client, auth["radiologist"], original, set(original.values()))
