"""DicomStore: DICOM files on disk under the data dir, indexed in the database.

Ingest checks every file before storing any (all or nothing), writes each instance once, and
records where each frame's bytes sit in its file, so frames are served by offset, never by
parsing the file again. Parsing runs in a worker thread: it is CPU work.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from sqlmodel import col, select

from ..access import board_has_external_members
from ..db import AsyncSession
from ..errors import Conflict, Invalid
from ..models import Board, Case, DicomInstance, DicomSeries, ImagingStudy, User, utcnow
from .deid import Deidentifier, burned_in

__all__ = ["DicomStore", "Parsed", "SUPPORTED_SYNTAXES", "NATIVE_SYNTAXES"]

NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "implicit little endian",
    "1.2.840.10008.1.2.1": "explicit little endian",
}
ENCAPSULATED_SYNTAXES = {
    "1.2.840.10008.1.2.4.80": "image/jls",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "image/jls",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.50": "image/jpeg",  # JPEG baseline
    "1.2.840.10008.1.2.4.57": "image/jpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "image/jpeg",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.90": "image/jp2",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "image/jp2",  # JPEG 2000
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",  # RLE lossless
}
SUPPORTED_SYNTAXES = {**NATIVE_SYNTAXES, **ENCAPSULATED_SYNTAXES}


@dataclass(frozen=True)
class Parsed:
    """One checked upload, ready to store."""

    name: str
    data: bytes
    dataset: Dataset
    transfer_syntax: str

    @property
    def study_uid(self) -> str:
        return str(self.dataset.StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)

    @property
    def sop_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


def parse(name: str, data: bytes) -> Parsed:
    """Check one file: DICOM, complete, an image with pixel data, a transfer syntax we serve."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), defer_size=1024)
        ds.get("PatientName")  # forces the character set to be applied early
        _ = ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPClassUID
    except InvalidDicomError as exc:
        raise Invalid.on("file", f"{name} is not a DICOM file") from exc
    except (EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise Invalid.on("file", f"{name} is not a complete DICOM file ({exc})") from exc
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    if syntax not in SUPPORTED_SYNTAXES:
        raise Invalid.on(
            "file", f"{name} uses transfer syntax {syntax or 'none'}, which we do not serve"
        )
    raw: Any = ds._dict.get(BaseTag(0x7FE00010))
    if raw is None:
        raise Invalid.on("file", f"{name} has no pixel data (only images can be attached)")
    end = getattr(raw, "value_tell", 0) + (raw.length if raw.length != 0xFFFFFFFF else 0)
    if end > len(data):
        raise Invalid.on("file", f"{name} is truncated: its pixel data ends past the file")
    for attribute in ("Rows", "Columns", "BitsAllocated"):
        if attribute not in ds:
            raise Invalid.on("file", f"{name} lacks {attribute}")
    return Parsed(name, data, ds, syntax)


def frame_runs(fp: BinaryIO, ds: Dataset, syntax: str) -> list[list[list[int]]]:
    """Per frame, the (offset, length) runs of its bytes in the file."""
    raw: Any = ds._dict[BaseTag(0x7FE00010)]
    start = int(raw.value_tell)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if syntax in NATIVE_SYNTAXES:
        samples = int(ds.get("SamplesPerPixel", 1))
        length = int(ds.Rows) * int(ds.Columns) * samples * int(ds.BitsAllocated) // 8
        return [[[start + i * length, length]] for i in range(frames)]
    fp.seek(start)
    offsets = parse_basic_offsets(fp)
    count, positions = parse_fragments(fp)
    fragments = []
    for position in positions:
        fp.seek(position + 4)
        size = int.from_bytes(fp.read(4), "little")
        fragments.append([position + 8, size])
    if frames == 1:
        return [fragments]
    if count == frames:
        return [[f] for f in fragments]
    if offsets and len(offsets) == frames:
        first = positions[0]
        starts = [first + o for o in offsets]
        out: list[list[list[int]]] = []
        for i, begin in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else float("inf")
            out.append([f for f, p in zip(fragments, positions, strict=True) if begin <= p < end])
        return out
    raise Invalid.on("file", "multi-frame image whose fragments cannot be mapped to frames")


def _metadata(ds: Dataset) -> dict[str, Any]:
    """DICOM JSON of everything but the pixel data (added per request as a BulkDataURI)."""
    copy = Dataset()
    for element in ds:
        if element.tag != 0x7FE00010:
            copy.add(element)
    return copy.to_json_dict(bulk_data_threshold=1 << 20)


def _deidentified(deid: Deidentifier, item: Parsed, pseudonym: str) -> Parsed:
    """The external participants' copy of one instance (CPU work: run in a thread)."""
    copy = deid.deidentify(item.dataset, pseudonym=pseudonym)
    out = io.BytesIO()
    copy.save_as(out, enforce_file_format=True)
    return parse(item.name, out.getvalue())


class DicomStore:
    def __init__(self, root: Path, key: bytes) -> None:
        self.root = root
        self._key = key

    async def check(self, files: list[tuple[str, bytes]]) -> list[Parsed]:
        return await asyncio.to_thread(lambda: [parse(name, data) for name, data in files])

    async def ingest(
        self, session: AsyncSession, case: Case, user: User, files: list[tuple[str, bytes]]
    ) -> list[DicomSeries]:
        """Store ``files`` for ``case``: every file is checked before anything is written."""
        if not files:
            raise Invalid.on("file", "no files were sent")
        parsed = await self.check(files)
        studies = {p.study_uid for p in parsed}
        existing = await session.exec(
            select(ImagingStudy).where(col(ImagingStudy.study_instance_uid).in_(studies))
        )
        for study in existing:
            if study.case_id != case.id:
                raise Conflict.on(
                    "file", f"study {study.study_instance_uid} belongs to another case"
                )
        taken = await session.exec(
            select(DicomInstance.sop_uid).where(
                col(DicomInstance.sop_uid).in_([p.sop_uid for p in parsed])
            )
        )
        already = set(taken)
        touched: dict[str, DicomSeries] = {}
        board = await session.get(Board, case.board_id)
        assert board is not None and board.id is not None
        # External members get a de-identified copy, made now, at ingest (one key per board,
        # so copies for two boards cannot be linked by their UIDs).
        deid = None
        if await board_has_external_members(session, board):
            key = hmac.new(self._key, f"deid:board:{board.id}".encode(), hashlib.sha256).digest()
            deid = Deidentifier(key)
        copies: dict[str, DicomSeries] = {}
        written: list[Path] = []
        try:
            for item in parsed:
                if item.sop_uid in already:
                    continue  # the same instance again: storing it twice would change nothing
                study = await self._study(session, case, user, item)
                series = touched.get(item.series_uid) or await self._series(session, study, item)
                touched[item.series_uid] = series
                written.append(await self._instance(session, series, item))
                already.add(item.sop_uid)
                if deid is not None and not series.burned_in:
                    # Burned-in series are withheld from external participants.
                    copy = await asyncio.to_thread(_deidentified, deid, item, case.number)
                    copy_study = await self._study(session, case, user, copy, deidentified=True)
                    copy_series = copies.get(copy.series_uid) or await self._series(
                        session, copy_study, copy, source=series
                    )
                    copies[copy.series_uid] = copy_series
                    written.append(await self._instance(session, copy_series, copy))
            await session.flush()
        except BaseException:
            # The unit of work rolls back; the files it wrote must not stay behind.
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return list(touched.values()) + list(copies.values())

    async def _instance(self, session: AsyncSession, series: DicomSeries, item: Parsed) -> Path:
        path = await asyncio.to_thread(self._write, item)
        with path.open("rb") as fp:
            runs = await asyncio.to_thread(frame_runs, fp, item.dataset, item.transfer_syntax)
        ds = item.dataset
        assert series.id is not None
        session.add(
            DicomInstance(
                series_id=series.id,
                sop_uid=item.sop_uid,
                sop_class_uid=str(ds.SOPClassUID),
                instance_number=int(ds.get("InstanceNumber") or 0) or None,
                path=str(path.relative_to(self.root)),
                transfer_syntax=item.transfer_syntax,
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                frames=int(ds.get("NumberOfFrames", 1) or 1),
                frame_index=runs,
                dicom_json=await asyncio.to_thread(_metadata, ds),
            )
        )
        return path

    def _write(self, item: Parsed) -> Path:
        folder = self.root / item.series_uid
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{item.sop_uid}.dcm"
        tmp = path.with_suffix(".part")
        tmp.write_bytes(item.data)
        tmp.replace(path)
        return path

    async def _study(
        self,
        session: AsyncSession,
        case: Case,
        user: User,
        item: Parsed,
        deidentified: bool = False,
    ) -> ImagingStudy:
        found = (
            await session.exec(
                select(ImagingStudy).where(
                    ImagingStudy.case_id == case.id,
                    ImagingStudy.study_instance_uid == item.study_uid,
                )
            )
        ).first()
        if found is not None:
            return found
        ds = item.dataset
        raw_date = str(ds.get("StudyDate", "") or "")
        try:
            day = date(int(raw_date[:4]), int(raw_date[4:6]), int(raw_date[6:8]))
        except ValueError:
            day = date.today()
        assert case.id is not None and user.id is not None
        study = ImagingStudy(
            deidentified=deidentified,
            case_id=case.id,
            study_instance_uid=item.study_uid,
            description=str(ds.get("StudyDescription", ""))[:200],
            modality=str(ds.get("Modality", ""))[:16],
            study_date=day,
            added_by=user.id,
            added_at=utcnow(),
        )
        session.add(study)
        await session.flush()
        return study

    async def _series(
        self,
        session: AsyncSession,
        study: ImagingStudy,
        item: Parsed,
        source: DicomSeries | None = None,
    ) -> DicomSeries:
        found = (
            await session.exec(
                select(DicomSeries).where(
                    DicomSeries.study_id == study.id, DicomSeries.series_uid == item.series_uid
                )
            )
        ).first()
        if found is not None:
            return found
        ds = item.dataset
        assert study.id is not None
        series = DicomSeries(
            study_id=study.id,
            series_uid=item.series_uid,
            alias=secrets.token_urlsafe(9),
            modality=str(ds.get("Modality", ""))[:16],
            description=str(ds.get("SeriesDescription", ""))[:200],
            number=int(ds.get("SeriesNumber") or 0) or None,
            burned_in=burned_in(ds),
            source_id=source.id if source is not None else None,
            created_at=utcnow(),
        )
        session.add(series)
        await session.flush()
        return series

    def read_frame(self, instance: DicomInstance, number: int) -> bytes:
        """Frame ``number`` (1-based) as stored, from the offset index (call in a thread)."""
        runs = instance.frame_index[number - 1]
        out = bytearray()
        with (self.root / instance.path).open("rb") as fp:
            for offset, length in runs:
                fp.seek(offset)
                out += fp.read(length)
        return bytes(out)

    def read_file(self, instance: DicomInstance) -> bytes:
        return (self.root / instance.path).read_bytes()
