"""Which stored imaging a user may reach: the studies of cases they may read, internal only;
and ``Grants``, the recent yes-answers, so a viewer's frame requests need not ask again."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from ..access import case_for, is_external, member_board_ids, sees_institution_boards
from ..db import AsyncSession, Database
from ..errors import Forbidden, NotFound
from ..models import Case, DicomInstance, DicomSeries, ImagingStudy, User

__all__ = [
    "visible_case_ids",
    "sees_copies",
    "study_for",
    "series_for",
    "instance_for",
    "Grants",
    "GRANT_SECONDS",
]

GRANT_SECONDS = 2.0
# Tables no imaging access decision reads: writes to them keep grants. Any other write (a
# member removed, a case moved, consent withdrawn, a role changed, imaging added) drops them.
_UNRELATED_TABLES = frozenset(
    {"audit_record", "attendance", "opinion", "agenda_item", "board_session", "attachment"}
)
_READ_ONLY = re.compile(r"\s*(SELECT|PRAGMA|SHOW|BEGIN|SAVEPOINT|RELEASE|ROLLBACK|COMMIT)\b", re.I)
_WRITTEN_TABLE = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+[\"`]?(\w+)", re.I)
_WROTE = "imaging.grants.wrote"  # on a pooled connection's info: a relevant write is pending


async def visible_case_ids(session: AsyncSession, user: User) -> set[int]:
    """Cases whose imaging ``user`` may see: their institution's (as for cases), and for an
    external member the consented cases of their boards — whose de-identified copies only
    they will get (see ``sees_copies``)."""
    query = select(Case.id).where(Case.home_institution_id == user.institution_id)
    if not sees_institution_boards(user):
        query = query.where(col(Case.board_id).in_(await member_board_ids(session, user)))
    own = {i for i in await session.exec(query) if i is not None}
    external = select(Case.id).where(
        col(Case.board_id).in_(await member_board_ids(session, user)),
        Case.home_institution_id != user.institution_id,
        col(Case.consent_external).is_(True),
    )
    return own | {i for i in await session.exec(external) if i is not None}


def sees_copies(user: User, case: Case) -> bool:
    """External participants see the de-identified copy of a case's imaging, never the
    original; staff of the case's institution see the original."""
    return is_external(user, case)


async def study_for(session: AsyncSession, user: User, study_uid: str) -> ImagingStudy:
    """The study, if ``user`` may see it. Any other study answers exactly as one that does not
    exist: a UID someone else may see (the original an external member gets a copy of,
    another board's case) is not confirmed to exist, nor its case named."""
    study = (
        await session.exec(select(ImagingStudy).where(ImagingStudy.study_instance_uid == study_uid))
    ).first()
    if study is None or not await _sees(session, user, study):
        raise NotFound(f"no study {study_uid}")
    return study


async def _sees(session: AsyncSession, user: User, study: ImagingStudy) -> bool:
    case = await session.get(Case, study.case_id)
    assert case is not None
    try:
        await case_for(session, user, study.case_id)
    except Forbidden:
        return False
    # Each audience has its own copy: staff the original, external members the de-identified.
    return study.deidentified == sees_copies(user, case)


async def series_for(
    session: AsyncSession, user: User, study_uid: str, series_uid: str
) -> tuple[ImagingStudy, DicomSeries]:
    study = await study_for(session, user, study_uid)
    series = (
        await session.exec(
            select(DicomSeries).where(
                DicomSeries.study_id == study.id, DicomSeries.series_uid == series_uid
            )
        )
    ).first()
    if series is None:
        raise NotFound(f"no series {series_uid} in study {study_uid}")
    return study, series


async def instance_for(
    session: AsyncSession, user: User, study_uid: str, series_uid: str, sop_uid: str
) -> tuple[DicomSeries, DicomInstance]:
    _, series = await series_for(session, user, study_uid, series_uid)
    instance = (
        await session.exec(
            select(DicomInstance).where(
                DicomInstance.series_id == series.id, DicomInstance.sop_uid == sop_uid
            )
        )
    ).first()
    if instance is None:
        raise NotFound(f"no instance {sop_uid} in series {series_uid}")
    return series, instance


GrantKey = tuple[int | None, str, int, str, str]


class Grants:
    """What the database recently answered for a user: their record (who a token's subject
    is, active or not, with which role) and yes to "may they read this series?"
    (``series_for``), so that a viewer's burst of frame requests does not ask it each time.

    An answer is kept ``ttl`` seconds at most, and all of them are dropped whenever a write
    to a table access depends on goes through the watched engine (see ``watch``); the short
    lifetime bounds what a change made by another process can leave behind. A refusal is
    never kept. A series grant's key holds the user's role and institution, so it does not
    survive a change to either.
    """

    def __init__(
        self,
        *,
        ttl: float = GRANT_SECONDS,
        size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._items: dict[GrantKey, tuple[int, float]] = {}
        self._users: dict[int, tuple[User, float]] = {}
        # Bumped by every ``clear``: a decision read from the database before a clear is
        # not kept after it.
        self.generation = 0

    @classmethod
    def watching(cls, engine: AsyncEngine, **kwargs: Any) -> Grants:
        grants = cls(**kwargs)
        grants.watch(engine)
        return grants

    async def user(self, db: Database, user_id: int) -> User | None:
        """The user's record as the database gave it at most ``ttl`` seconds ago."""
        found = self._users.get(user_id)
        if found is not None and self._clock() < found[1]:
            return found[0]
        generation = self.generation
        async with db.read() as session:
            user = await session.get(User, user_id)
        if user is not None and generation == self.generation:
            if len(self._users) >= self._size:
                self._users.clear()
            self._users[user_id] = (user, self._clock() + self._ttl)
        return user

    async def series_id(
        self, session: AsyncSession, user: User, study_uid: str, series_uid: str
    ) -> int:
        """The series' id if ``user`` may read it: from a live grant, else from ``check``."""
        found = self._items.get(_key(user, study_uid, series_uid))
        if found is not None and self._clock() < found[1]:
            return found[0]
        _, series = await self.check(session, user, study_uid, series_uid)
        assert series.id is not None
        return series.id

    async def check(
        self, session: AsyncSession, user: User, study_uid: str, series_uid: str
    ) -> tuple[ImagingStudy, DicomSeries]:
        """``series_for``, asked of the database, and kept as a grant if it says yes."""
        generation = self.generation
        study, series = await series_for(session, user, study_uid, series_uid)
        assert series.id is not None
        if generation == self.generation:
            if len(self._items) >= self._size:
                self._items.clear()
            self._items[_key(user, study_uid, series_uid)] = (series.id, self._clock() + self._ttl)
        return study, series

    def clear(self) -> None:
        self.generation += 1
        self._items.clear()
        self._users.clear()

    def watch(self, engine: AsyncEngine) -> None:
        """Clear on every write through ``engine`` to a table access may depend on: when the
        statement runs, and again when its connection goes back to the pool (committed or
        rolled back), so no answer read before the commit outlives it."""

        def after_execute(conn: Any, _c: Any, statement: str, *_: Any) -> None:
            if _READ_ONLY.match(statement):
                return
            table = _WRITTEN_TABLE.match(statement)
            if table is None or table.group(1).lower() not in _UNRELATED_TABLES:
                conn.info[_WROTE] = True
                self.clear()

        def checkin(_dbapi: Any, record: Any) -> None:
            if record.info.pop(_WROTE, False):
                self.clear()

        event.listen(engine.sync_engine, "after_cursor_execute", after_execute)
        event.listen(engine.sync_engine, "checkin", checkin)


def _key(user: User, study_uid: str, series_uid: str) -> GrantKey:
    return (user.id, user.role, user.institution_id, study_uid, series_uid)
