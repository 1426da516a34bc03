"""FrameIndex: where the frames of recently read series sit, so that a frame request costs a
grant lookup, a dictionary lookup and a file read instead of four database queries; and
``read_frames``, which reads frames the page cache holds without leaving the event loop."""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import QueryableAttribute, defer
from sqlmodel import select

from ..db import AsyncSession
from ..errors import NotFound
from ..models import DicomInstance, User
from .access import Grants
from .store import DicomStore

__all__ = ["FrameIndex", "read_frames", "INLINE_BYTES"]

# Larger requests are read in a thread even from the page cache: copying them would hold up
# the event loop.
INLINE_BYTES = 2 << 20
_NOWAIT = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+

SeriesRows = dict[str, DicomInstance]
# Left unread: the largest columns, and a frame needs none of them.
_DICOM_JSON = cast(QueryableAttribute[Any], DicomInstance.dicom_json)
_DICOM_ENC = cast(QueryableAttribute[Any], DicomInstance.dicom_enc)


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
        """The instance, if ``user`` may read its series; 404 as ``series_for`` says, and for
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
                .options(defer(_DICOM_JSON), defer(_DICOM_ENC))
            )
        }
        self._series[series_id] = (generation, rows)
        self._series.move_to_end(series_id)
        while len(self._series) > self._size:
            self._series.popitem(last=False)
        return rows


async def read_frames(
    store: DicomStore, instance: DicomInstance, numbers: list[int]
) -> list[bytes | bytearray]:
    """Frames ``numbers`` (1-based) of ``instance`` as stored: read and decrypted on the event
    loop if the page cache holds every byte of them, else by ``DicomStore.read_frame`` in a
    thread (handing a small read to a thread costs more than the read and its decryption,
    which AES-NI does at gigabytes a second)."""
    frames = [instance.frame_index[n - 1] for n in numbers]
    if _NOWAIT is not None and sum(n for runs in frames for _, n in runs) <= INLINE_BYTES:
        found = _cached(store.path_of(instance), frames, _NOWAIT)
        if found is not None:
            return store.opened(instance, numbers, found)
    return await asyncio.to_thread(lambda: [store.read_frame(instance, n) for n in numbers])


def _cached(
    path: Path, frames: list[list[list[int]]], nowait: int
) -> list[bytes | bytearray] | None:
    """Each frame's bytes, if the page cache holds them all; never waits for the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        out: list[bytes | bytearray] = []
        for runs in frames:
            parts: list[bytearray] = []
            for offset, length in runs:
                part = bytearray(length)
                try:
                    if os.preadv(fd, [part], offset, nowait) != length:
                        return None
                except OSError:
                    return None  # not cached (EAGAIN), or not supported here: the thread says
                parts.append(part)
            out.append(parts[0] if len(parts) == 1 else b"".join(parts))
        return out
    finally:
        os.close(fd)
