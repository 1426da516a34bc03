"""DicomStore: DICOM files on disk under the data dir, sealed (``imaging.sealed``: encrypted
in chunks, one per frame), indexed in the database.

Ingest checks every file before storing any (all or nothing), writes each instance once, and
records where each frame's sealed bytes sit in its file, so a frame is served by one read and
one decryption, never by parsing the file again. Parsing runs in a worker thread: it is CPU
work. The DICOM JSON kept for metadata requests is sealed too.

External participants see de-identified copies, made at ingest while the board has external
members, and later (``write_copies`` then ``index_copies``) for a series cleared after ingest
or a board that gains an external member: see ``imaging.copies``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from ..db import AsyncSession, Database
from ..errors import Conflict, EboardError, Invalid
from ..keys import KeyRing
from ..models import Board, Case, DicomInstance, DicomSeries, ImagingStudy, User, utcnow
from .deid import Deidentifier, burned_in
from .sealed import Runs, Seal
from .uid import check_uid

__all__ = [
    "DicomStore",
    "OutsideStore",
    "Parsed",
    "Copies",
    "withheld",
    "SUPPORTED_SYNTAXES",
    "NATIVE_SYNTAXES",
]

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

log = logging.getLogger(__name__)


# The UIDs every stored instance must carry, each checked to be a UID where it is parsed.
_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


class OutsideStore(RuntimeError):
    """A path that resolves outside the store's root: never read or written (a server fault
    or a tampered index row, not a client's mistake)."""


@dataclass(frozen=True)
class Parsed:
    """One checked upload, ready to store: its file is ``source``, a spooled file (uploads) or
    bytes in memory (copies made by the server)."""

    name: str
    source: Path | bytes
    dataset: Dataset
    transfer_syntax: str

    def open(self) -> BinaryIO:
        """The file's bytes, to be read from the start."""
        if isinstance(self.source, Path):
            return self.source.open("rb")
        return io.BytesIO(self.source)

    @property
    def study_uid(self) -> str:
        return str(self.dataset.StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)

    @property
    def sop_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


def parse(name: str, source: Path | bytes) -> Parsed:
    """Check one file (a path, or bytes): DICOM, complete, with UIDs of the UI form, an image
    with pixel data, a transfer syntax we serve. Large values stay in the file until read."""
    try:
        ds = pydicom.dcmread(
            str(source) if isinstance(source, Path) else io.BytesIO(source), defer_size=1024
        )
        ds.get("PatientName")  # forces the character set to be applied early
        uids = [ds[keyword].value for keyword in _UIDS]
    except InvalidDicomError as exc:
        raise Invalid.on("file", f"{name} is not a DICOM file") from exc
    except (EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise Invalid.on("file", f"{name} is not a complete DICOM file ({exc})") from exc
    for keyword, value in zip(_UIDS, uids, strict=True):
        check_uid(value, keyword, name)
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    if syntax:
        check_uid(syntax, "TransferSyntaxUID", name)
    if syntax not in SUPPORTED_SYNTAXES:
        raise Invalid.on(
            "file", f"{name} uses transfer syntax {syntax or 'none'}, which we do not serve"
        )
    raw: Any = ds._dict.get(BaseTag(0x7FE00010))
    if raw is None:
        raise Invalid.on("file", f"{name} has no pixel data (only images can be attached)")
    end = getattr(raw, "value_tell", 0) + (raw.length if raw.length != 0xFFFFFFFF else 0)
    size = source.stat().st_size if isinstance(source, Path) else len(source)
    if end > size:
        raise Invalid.on("file", f"{name} is truncated: its pixel data ends past the file")
    for attribute in ("Rows", "Columns", "BitsAllocated"):
        if attribute not in ds:
            raise Invalid.on("file", f"{name} lacks {attribute}")
    return Parsed(name, source, ds, syntax)


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


def _metadata(seal: Seal, item: Parsed) -> bytes:
    """DICOM JSON of everything but the pixel data (added per request as a BulkDataURI),
    sealed to the instance."""
    copy = Dataset()
    for element in item.dataset:
        if element.tag != 0x7FE00010:
            copy.add(element)
    return seal.seal_json(item.sop_uid, copy.to_json_dict(bulk_data_threshold=1 << 20))


def withheld(series: DicomSeries) -> bool:
    """Whether external participants are kept from ``series``: burned in and not cleared."""
    return series.burned_in and series.cleared_at is None


@dataclass
class Copies:
    """De-identified instances written to disk but not yet indexed (see ``write_copies``)."""

    case: Case
    # Per source series, its first copied instance: the copy's study and series rows come
    # from it.
    heads: dict[int, Parsed] = field(default_factory=dict)
    rows: list[tuple[DicomSeries, DicomInstance]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def _deidentified(deid: Deidentifier, item: Parsed, pseudonym: str) -> Parsed:
    """The external participants' copy of one instance (CPU work: run in a thread)."""
    copy = deid.deidentify(item.dataset, pseudonym=pseudonym)
    out = io.BytesIO()
    copy.save_as(out, enforce_file_format=True)
    return parse(item.name, out.getvalue())


class DicomStore:
    """The files under ``root``, sealed with ``keys`` (``imaging.sealed``), and their index;
    the ring's hash key derives each board's UID map."""

    def __init__(self, root: Path, keys: KeyRing) -> None:
        self.root = root
        self._key = keys.hash_key
        self.seal = Seal(keys)

    def derived_key(self, purpose: bytes) -> bytes:
        """A key for one ``purpose``, derived from the ring's hash key."""
        return hmac.new(self._key, b"imaging:" + purpose, hashlib.sha256).digest()

    def deidentifier(self, board_id: int) -> Deidentifier:
        """The de-identifier of one board's copies: one key per board, so copies made for two
        boards cannot be linked by their UIDs."""
        key = hmac.new(self._key, f"deid:board:{board_id}".encode(), hashlib.sha256).digest()
        return Deidentifier(key)

    async def check(self, files: Sequence[tuple[str, Path | bytes]]) -> list[Parsed]:
        """Every file parsed and checked (``parse``); call it before taking the write unit."""
        if not files:
            raise Invalid.on("file", "no files were sent")
        return await asyncio.to_thread(lambda: [parse(name, data) for name, data in files])

    async def ingest(
        self, session: AsyncSession, case: Case, user: User, parsed: list[Parsed]
    ) -> list[DicomSeries]:
        """Store the checked files ``parsed`` (see ``check``) for ``case``, all or nothing:
        on any failure every file written here is removed (the unit of work rolls back)."""
        if not parsed:
            raise Invalid.on("file", "no files were sent")
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
        # External members get a de-identified copy, made now, at ingest.
        deid = None
        if await board_has_external_members(session, board):
            deid = self.deidentifier(board.id)
        copies: dict[str, DicomSeries] = {}
        written: list[Path] = []
        try:
            for item in parsed:
                if item.sop_uid in already:
                    continue  # the same instance again: storing it twice would change nothing
                study = await self._study(session, case, user.id, item)
                series = touched.get(item.series_uid) or await self._series(session, study, item)
                touched[item.series_uid] = series
                written.append(await self._instance(session, series, item))
                already.add(item.sop_uid)
                if deid is not None and not withheld(series):
                    # Burned-in series are withheld from external participants until cleared.
                    copy = await asyncio.to_thread(_deidentified, deid, item, case.number)
                    copy_study = await self._study(session, case, user.id, copy, deidentified=True)
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

    async def write_copies(
        self, session: AsyncSession, case: Case, sources: list[DicomSeries]
    ) -> Copies:
        """Write to disk what is missing of the de-identified copy of ``sources`` (original
        series of ``case``) for the external participants of the case's board; index nothing.

        An instance whose copy is indexed already is skipped, so nothing is made twice. If any
        instance fails (a stored file unreadable, say), the files written so far are removed
        and the error raised: a study's copy is written whole or not at all.
        """
        deid = self.deidentifier(case.board_id)
        copies = Copies(case)
        try:
            for series in sources:
                assert series.source_id is None, "a copy is never copied again"
                for instance in await self._missing_copies(session, deid, series):
                    copy = await asyncio.to_thread(self._copy_of, deid, instance, case.number)
                    path, row = await self._stored(copy)
                    copies.paths.append(path)
                    assert series.id is not None
                    copies.heads.setdefault(series.id, copy)
                    copies.rows.append((series, row))
        except BaseException:
            self.discard(copies)
            raise
        return copies

    async def index_copies(
        self, session: AsyncSession, copies: Copies, *, added_by: int
    ) -> list[DicomSeries]:
        """Index copies written by ``write_copies`` in the caller's unit of work; on failure
        their files are removed (the unit rolls back the rows)."""
        made: dict[int, DicomSeries] = {}
        try:
            for source, row in copies.rows:
                assert source.id is not None
                copy_series = made.get(source.id)
                if copy_series is None:
                    head = copies.heads[source.id]
                    study = await self._study(
                        session, copies.case, added_by, head, deidentified=True
                    )
                    copy_series = await self._series(session, study, head, source=source)
                    made[source.id] = copy_series
                assert copy_series.id is not None
                row.series_id = copy_series.id
                session.add(row)
            await session.flush()
        except BaseException:
            self.discard(copies)
            raise
        return list(made.values())

    def discard(self, copies: Copies) -> None:
        """Remove the files of copies that will not be indexed."""
        for path in copies.paths:
            path.unlink(missing_ok=True)

    async def _missing_copies(
        self, session: AsyncSession, deid: Deidentifier, series: DicomSeries
    ) -> list[DicomInstance]:
        instances = list(
            await session.exec(
                select(DicomInstance)
                .where(DicomInstance.series_id == series.id)
                .order_by(col(DicomInstance.instance_number), col(DicomInstance.id))
            )
        )
        # The board's UID map is deterministic: an instance's copy has a known SOP UID.
        mapped = {str(deid.uid(i.sop_uid)): i for i in instances}
        indexed = set(
            await session.exec(
                select(DicomInstance.sop_uid).where(col(DicomInstance.sop_uid).in_(mapped))
            )
        )
        return [i for uid, i in mapped.items() if uid not in indexed]

    def _copy_of(self, deid: Deidentifier, instance: DicomInstance, pseudonym: str) -> Parsed:
        """The copy of a stored instance (CPU work: run in a thread)."""
        item = parse(f"stored instance {instance.id}", self.read_file(instance))
        return _deidentified(deid, item, pseudonym)

    async def _instance(self, session: AsyncSession, series: DicomSeries, item: Parsed) -> Path:
        path, row = await self._stored(item)
        assert series.id is not None
        row.series_id = series.id
        session.add(row)
        return path

    async def _stored(self, item: Parsed) -> tuple[Path, DicomInstance]:
        """Write ``item``'s file, sealed; its index row, whose ``series_id`` the caller sets.
        If the row cannot be made, the file is removed again."""
        path, index = await asyncio.to_thread(self._write, item)
        try:
            return path, await self._row(path, index, item)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    async def _row(self, path: Path, index: Runs, item: Parsed) -> DicomInstance:
        ds = item.dataset
        return DicomInstance(
            series_id=0,
            sop_uid=item.sop_uid,
            sop_class_uid=str(ds.SOPClassUID),
            instance_number=int(ds.get("InstanceNumber") or 0) or None,
            path=str(path.relative_to(self._root())),
            transfer_syntax=item.transfer_syntax,
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            frame_index=index,
            file_key=self.seal.active_key,
            dicom_enc=await asyncio.to_thread(_metadata, self.seal, item),
        )

    def _write(self, item: Parsed) -> tuple[Path, Runs]:
        """Seal ``item``'s file under a fresh server-made name; where each sealed frame sits
        in it. Its name is unknown to every reader until its row is committed."""
        path = self._new_path()
        with item.open() as source:
            runs = frame_runs(source, item.dataset, item.transfer_syntax)
            return path, self.seal.write(path, source, runs, item.sop_uid, item.name)

    # Paths: made by the server, never from a UID or a request, and always inside the root.

    def _root(self) -> Path:
        return self.root.resolve()

    def _inside(self, path: Path) -> Path:
        """``path`` resolved, if it lies inside the root; else OutsideStore."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self._root()):
            raise OutsideStore(f"a stored path resolves outside {self.root}")
        return resolved

    def _new_path(self) -> Path:
        """A fresh file name in one of 256 subfolders (created 0700 as needed)."""
        name = secrets.token_hex(16)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = self._inside(self.root / name[:2])
        folder.mkdir(mode=0o700, exist_ok=True)
        return self._inside(folder / f"{name}.dcm")

    def path_of(self, instance: DicomInstance) -> Path:
        """Where ``instance``'s file is (rows of any age), checked to lie inside the root."""
        return self._inside(self.root / instance.path)

    async def _study(
        self,
        session: AsyncSession,
        case: Case,
        added_by: int | None,
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
        assert case.id is not None and added_by is not None
        study = ImagingStudy(
            deidentified=deidentified,
            case_id=case.id,
            study_instance_uid=item.study_uid,
            description=str(ds.get("StudyDescription", ""))[:200],
            modality=str(ds.get("Modality", ""))[:16],
            study_date=day,
            added_by=added_by,
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
        out = []
        # Unbuffered: each run is one read straight into its bytes, copied once.
        with self.path_of(instance).open("rb", buffering=0) as fp:
            for offset, length in runs:
                fp.seek(offset)
                out.append(fp.read(length))
        data = b"".join(out)  # a single run is returned as is, not copied
        if instance.file_key is None:
            return data
        return self.seal.open_frame(
            instance.file_key, data, instance.sop_uid, number, instance.frames
        )

    def opened(
        self, instance: DicomInstance, numbers: list[int], raw: list[bytes | bytearray]
    ) -> list[bytes | bytearray]:
        """Frames ``numbers`` from the bytes their index runs hold: decrypted if the file is
        sealed (instances stored before sealing are read as they are)."""
        kid = instance.file_key
        if kid is None:
            return raw
        return [
            self.seal.open_frame(kid, data, instance.sop_uid, n, instance.frames)
            for n, data in zip(numbers, raw, strict=True)
        ]

    def read_file(self, instance: DicomInstance) -> bytes:
        """The instance's file as it was stored, byte for byte (call in a thread)."""
        path = self.path_of(instance)
        if instance.file_key is None:
            return path.read_bytes()
        return self.seal.read(path, instance.sop_uid)

    async def seal_plain(self, db: Database) -> int:
        """Seal the instances stored before sealing (revision 0007), one unit of work each: the
        sealed file is written beside the plain one, the row points at it (its key, frame
        index and sealed JSON; the plain JSON dropped), then the plain file is removed. Run at
        start; returns how many were sealed. One that cannot be (its file gone, say) is logged
        and left as it is: it does not keep the server from starting."""
        async with db.read() as session:
            plain = list(
                await session.exec(
                    select(DicomInstance.id).where(col(DicomInstance.file_key).is_(None))
                )
            )
        sealed = 0
        for instance_id in plain:
            try:
                await self._seal_one(db, instance_id)
                sealed += 1
            except (OSError, ValueError, EboardError) as exc:
                log.warning(
                    "DicomStore(instance %s) not sealed: %s", instance_id, type(exc).__name__
                )
        if sealed:
            await db.checkpoint()  # the plain JSON's pages out of the WAL
        return sealed

    async def _seal_one(self, db: Database, instance_id: int | None) -> None:
        async with db.write() as session:
            instance = await session.get(DicomInstance, instance_id)
            assert instance is not None and instance.file_key is None
            old = self.path_of(instance)
            new = old.with_name(f"{old.stem}.sealed.dcm")
            index = await asyncio.to_thread(self._seal_plain, old, new, instance)
            try:
                instance.frame_index = index
                instance.file_key = self.seal.active_key
                instance.dicom_enc = self.seal.seal_json(
                    instance.sop_uid, dict(instance.dicom_json or {})
                )
                instance.dicom_json = None
                instance.path = str(new.relative_to(self._root()))
                session.add(instance)
                await session.flush()
            except BaseException:
                new.unlink(missing_ok=True)
                raise
        old.unlink(missing_ok=True)

    def _seal_plain(self, old: Path, new: Path, instance: DicomInstance) -> Runs:
        with old.open("rb") as source:
            return self.seal.write(
                new, source, instance.frame_index, instance.sop_uid, instance.path
            )

    def metadata(self, instance: DicomInstance) -> dict[str, Any]:
        """The instance's DICOM JSON, pixel data left out."""
        if instance.dicom_enc is None:
            return dict(instance.dicom_json or {})
        return self.seal.open_json(instance.sop_uid, instance.dicom_enc)
