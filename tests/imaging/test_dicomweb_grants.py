"""Frame requests answered from memory (Grants, FrameIndex): as fast as a dictionary lookup,
and never after the database would have said no."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import pydicom
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event
from sqlmodel import col, select

from server.boards import BoardSpec, create_board
from server.db import AsyncSession, Database
from server.errors import NotFound
from server.imaging.access import Grants
from server.imaging.dicomweb import FRAMES
from server.imaging.phantom import write_ct_series
from server.models import BoardMember, Case, DicomInstance, DicomSeries, ImagingStudy, User
from server.services import Services

Auth = dict[str, dict[str, str]]
AS_STORED = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}


@dataclass(frozen=True)
class Frame:
    """Frame 1 of one stored instance, and the path that retrieves it."""

    study: str
    series: str
    sop: str

    @property
    def path(self) -> str:
        return f"{self.series_path}/instances/{self.sop}/frames/1"

    @property
    def series_path(self) -> str:
        return f"/dicom-web/studies/{self.study}/series/{self.series}"


async def _frame(services: Services, case_id: int, *, copy: bool) -> Frame:
    """A frame of the case's original imaging, or of its de-identified copy."""
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
    return Frame(study.study_instance_uid, series.series_uid, instance.sop_uid)


async def _status(client: TestClient[Any, Any], frame: Frame, headers: dict[str, str]) -> int:
    resp = await client.get(frame.path, headers={**headers, **AS_STORED})
    await resp.read()
    return resp.status


@contextmanager
def _statements(services: Services) -> Iterator[list[str]]:
    """The SQL statements the app runs inside the block."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def _leave_boards(session: AsyncSession, user: User) -> None:
    # No route removes a member yet; whatever will must delete these rows, as here.
    for member in await session.exec(select(BoardMember).where(BoardMember.user_id == user.id)):
        await session.delete(member)


async def _user(services: Services, username: str) -> User:
    async with services.db.read() as session:
        return (await session.exec(select(User).where(User.username == username))).one()


async def test_a_viewers_frame_requests_ask_the_database_nothing_after_the_first(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    frame = await _frame(services, ids["ready_case"], copy=False)
    assert await _status(client, frame, auth["radiologist"]) == 200
    with _statements(services) as seen:
        for _ in range(3):
            assert await _status(client, frame, auth["radiologist"]) == 200
    assert seen == []


async def test_opening_a_series_asks_the_database_and_primes_its_frames(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    frame = await _frame(services, ids["ready_case"], copy=True)
    with _statements(services) as seen:
        resp = await client.get(f"{frame.series_path}/metadata", headers=auth["external"])
        assert resp.status == 200
    assert any("board_member" in s for s in seen)  # the access decision was made afresh
    await _status(client, frame, auth["external"])  # reads the series' frame index
    with _statements(services) as seen:
        assert await _status(client, frame, auth["external"]) == 200
    assert seen == []


async def test_one_users_grant_is_not_another_users(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    original = await _frame(services, ids["ready_case"], copy=False)
    assert await _status(client, original, auth["radiologist"]) == 200
    assert await _status(client, original, auth["external"]) == 404


async def test_frames_are_refused_as_soon_as_consent_to_external_review_is_withdrawn(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    copy = await _frame(services, ids["ready_case"], copy=True)
    assert await _status(client, copy, auth["external"]) == 200
    resp = await client.patch(
        f"/api/cases/{ids['ready_case']}",
        headers=auth["coordinator"],
        json={"consent_external": False},
    )
    assert resp.status == 200, await resp.text()
    assert await _status(client, copy, auth["external"]) == 404


async def test_frames_are_refused_as_soon_as_the_user_leaves_the_board(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    frame = await _frame(services, ids["ready_case"], copy=False)
    radiologist = await _user(services, "radiologist")
    assert await _status(client, frame, auth["radiologist"]) == 200
    async with services.db.write() as session:
        await _leave_boards(session, radiologist)
    assert await _status(client, frame, auth["radiologist"]) == 404


async def test_frames_are_refused_as_soon_as_the_case_moves_to_another_board(
    client: TestClient[Any, Any], services: Services, auth: Auth, ids: dict[str, int]
) -> None:
    frame = await _frame(services, ids["ready_case"], copy=False)
    assert await _status(client, frame, auth["radiologist"]) == 200
    coordinator = await _user(services, "coordinator")
    async with services.db.write() as session:
        spec = BoardSpec(
            name="Breast MDT",
            tumor_site="breast",
            timezone="Asia/Shanghai",
            rrule="FREQ=WEEKLY;BYDAY=WE",
            start_time="12:00",
            duration_minutes=60,
            required_specialties=[],
            start_date=date.today(),
        )
        other = await create_board(
            session, spec, home_institution_id=coordinator.institution_id, horizon_weeks=4
        )
        case = await session.get(Case, ids["ready_case"])
        assert case is not None and other.id is not None
        case.board_id = other.id
        session.add(case)
    assert await _status(client, frame, auth["radiologist"]) == 404


@pytest.mark.parametrize(
    "change, status",
    [({"active": False}, 401), ({"role": "observer"}, 404)],
    ids=["disabled", "role-changed"],
)
async def test_a_users_changed_record_applies_to_frames_at_once(
    client: TestClient[Any, Any],
    services: Services,
    auth: Auth,
    ids: dict[str, int],
    change: dict[str, object],
    status: int,
) -> None:
    # Records staff see every case of their institution; an observer only their boards'.
    frame = await _frame(services, ids["ready_case"], copy=False)
    assert await _status(client, frame, auth["records"]) == 200
    async with services.db.write() as session:
        records = await session.get(User, (await _user(services, "records")).id)
        assert records is not None
        for name, value in change.items():
            setattr(records, name, value)
        session.add(records)
    assert await _status(client, frame, auth["records"]) == status


async def test_an_instance_stored_after_its_series_was_read_is_served(
    client: TestClient[Any, Any],
    services: Services,
    auth: Auth,
    ids: dict[str, int],
    tmp_path: Any,
) -> None:
    paths = write_ct_series(tmp_path, slices=2, size=64)
    first, second = (pydicom.dcmread(p) for p in paths)
    resp = await client.post(
        f"/api/cases/{ids['preparing_case']}/studies",
        headers=auth["coordinator"],
        json={
            "study_instance_uid": str(first.StudyInstanceUID),
            "description": "CT",
            "modality": "CT",
            "study_date": "2026-11-20",
        },
    )
    assert resp.status == 201, await resp.text()

    async def stow(path: Any) -> None:
        body = b"".join(
            [
                b"--b\r\nContent-Type: application/dicom\r\n\r\n",
                path.read_bytes(),
                b"\r\n--b--\r\n",
            ]
        )
        resp = await client.post(
            "/dicom-web/studies",
            data=body,
            headers={
                **auth["coordinator"],
                "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
            },
        )
        assert resp.status == 200, await resp.text()

    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    earlier = Frame(study, series, str(first.SOPInstanceUID))
    later = Frame(study, series, str(second.SOPInstanceUID))
    await stow(paths[0])
    assert await _status(client, earlier, auth["coordinator"]) == 200
    await stow(paths[1])
    assert await _status(client, later, auth["coordinator"]) == 200
    missing = Frame(study, series, "1.2.3.4")
    assert await _status(client, missing, auth["coordinator"]) == 404


# Grants on their own: the clock and the second writer are the test's.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoDatabase:
    """A session that fails if asked anything: what a grant must be answered without."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the database was asked ({name})")


async def test_a_change_made_by_another_process_is_seen_once_the_grant_expires(
    services: Services, ids: dict[str, int]
) -> None:
    clock = Clock()
    grants = Grants.watching(services.db.engine, ttl=2.0, clock=clock)
    frame = await _frame(services, ids["ready_case"], copy=False)
    radiologist = await _user(services, "radiologist")
    async with services.db.read() as session:
        await grants.check(session, radiologist, frame.study, frame.series)
    elsewhere = Database(services.settings.effective_database_url)  # another server process
    try:
        async with elsewhere.write() as session:
            await _leave_boards(session, radiologist)
    finally:
        await elsewhere.close()
    clock.now += 1.9
    await grants.series_id(NoDatabase(), radiologist, frame.study, frame.series)
    clock.now += 0.2
    async with services.db.read() as session:
        with pytest.raises(NotFound):
            await grants.series_id(session, radiologist, frame.study, frame.series)


async def test_a_grant_read_before_a_write_is_not_kept_after_it(
    services: Services, ids: dict[str, int]
) -> None:
    grants = Grants(clock=Clock())
    frame = await _frame(services, ids["ready_case"], copy=False)
    radiologist = await _user(services, "radiologist")
    async with services.db.read() as session:
        checking = asyncio.ensure_future(
            grants.check(session, radiologist, frame.study, frame.series)
        )
        await asyncio.sleep(0)  # the check is now waiting for the database
        grants.clear()  # as a committed write would
        await checking
    with pytest.raises(AssertionError, match="the database was asked"):
        await grants.series_id(NoDatabase(), radiologist, frame.study, frame.series)


async def test_the_app_grants_are_cleared_by_writes_that_matter_only(
    client: TestClient[Any, Any], services: Services, ids: dict[str, int]
) -> None:
    grants = client.app[FRAMES].grants
    before = grants.generation
    async with services.db.write() as session:
        await services.audit.append(
            session, actor_id=None, action="test", target_type="test", target_id=1, detail=None
        )
    assert grants.generation == before
    async with services.db.write() as session:
        case = await session.get(Case, ids["requested_case"])
        assert case is not None
        case.translator = "someone"
        session.add(case)
    assert grants.generation > before
