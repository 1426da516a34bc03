"""FrameIndex: where the frames of recently read series sit, so that a frame request costs a
grant lookup, a dictionary lookup and a file read instead of four database queries."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import QueryableAttribute, defer
from sqlmodel import select

from ..db import AsyncSession
from ..errors import NotFound
from ..models import DicomInstance, User
from .access import Grants

__all__ = ["FrameIndex"]

SeriesRows = dict[str, DicomInstance]
# Left unread: the largest column, and a frame needs none of it.
_DICOM_JSON = cast(QueryableAttribute[Any], DicomInstance.dicom_json)


class FrameIndex:
    """The instance rows of recently read series by SOP Instance UID (their frame offsets,
    without their DICOM JSON), least recently used out first.

    Whether the user may read the series is settled by ``grants`` on every call. A series is
    read again when asked for an instance it does not list (STOW and late copies add
    instances), and when the grants were cleared since it was read (a write to the imaging
    tables clears them)."""

    def __init__(self, grants: Grants, size: int = 64) -> None:
        self.grants = grants
        self._size = size
        self._series: OrderedDict[int, tuple[int, SeriesRows]] = OrderedDict()

    @classmethod
    def watching(cls, engine: AsyncEngine) -> FrameIndex:
        """An index whose grants are dropped by every write to ``engine`` that access may
        depend on (``Grants.watch``)."""
        return cls(Grants.watching(engine))

    async def instance(
        self, session: AsyncSession, user: User, study_uid: str, series_uid: str, sop_uid: str
    ) -> DicomInstance:
        """The instance, if ``user`` may read its series; 403 as ``series_for`` says, 404 for
        an instance the series does not hold."""
        series_id = await self.grants.series_id(session, user, study_uid, series_uid)
        found = self._series.get(series_id)
        if found is not None and found[0] == self.grants.generation and sop_uid in found[1]:
            self._series.move_to_end(series_id)
            return found[1][sop_uid]
        rows = await self._read(session, series_id)
        instance = rows.get(sop_uid)
        if instance is None:
            raise NotFound(f"no instance {sop_uid} in series {series_uid}")
        return instance

    async def _read(self, session: AsyncSession, series_id: int) -> SeriesRows:
        generation = self.grants.generation
        rows = {
            i.sop_uid: i
            for i in await session.exec(
                select(DicomInstance)
                .where(DicomInstance.series_id == series_id)
                .options(defer(_DICOM_JSON))
            )
        }
        self._series[series_id] = (generation, rows)
        self._series.move_to_end(series_id)
        while len(self._series) > self._size:
            self._series.popitem(last=False)
        return rows
