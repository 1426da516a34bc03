"""NoteStore: consensus notes held in memory while open, every update appended durably.

An update is checked against the note's replica, appended to the database (sealed), and only
then acknowledged. Appends from all notes are committed together: whoever arrives while a
commit is running goes into the next one (group commit), so fifteen people typing cost a
handful of transactions, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlmodel import col, select

from ..crypto import FieldCipher
from ..db import Database
from ..errors import Conflict
from ..models import Board, Case, Note, NoteUpdate, utcnow
from .document import NoteDocument
from .templates import TemplateSet

__all__ = ["NoteStore", "OpenNote", "StatusListener"]

log = logging.getLogger(__name__)

_SEAL_FIELD = "note_update"
# Above this many stored updates a note is compacted into one when it is next loaded.
_COMPACT_AFTER = 200

StatusListener = Callable[["OpenNote"], Awaitable[None]]


@dataclass
class OpenNote:
    """A note in memory: its row, its CRDT replica and where it stands."""

    note_id: int
    case_id: int
    case_number: str
    template: str
    status: str
    document: NoteDocument
    # Set while the chair finalizes: the content being signed must not move underneath.
    frozen: bool = False
    in_flight: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def readonly(self) -> bool:
        return self.status == "finalized"


@dataclass
class _Append:
    note_id: int
    data: bytes
    author_id: int | None
    done: asyncio.Future[None]


class NoteStore:
    """The notes open in this process, by case id."""

    def __init__(self, db: Database, cipher: FieldCipher, templates: TemplateSet) -> None:
        self._db = db
        self._cipher = cipher
        self.templates = templates
        self._open: dict[int, OpenNote] = {}
        self._loading = asyncio.Lock()
        self._queue: list[_Append] = []
        self._flusher: asyncio.Task[None] | None = None
        self._listeners: list[StatusListener] = []

    def template_of(self, board: Board) -> str:
        return board.note_template or self.templates.for_site(board.tumor_site)

    async def load(self, case: Case, board: Board) -> OpenNote:
        """The case's note, created with its template's skeleton on first use."""
        assert case.id is not None
        async with self._loading:
            note = self._open.get(case.id)
            if note is None:
                note = await self._read_or_create(case, board)
                self._open[case.id] = note
            return note

    def opened(self, case_id: int) -> OpenNote | None:
        """The note, if it is in memory (someone has it open)."""
        return self._open.get(case_id)

    async def _read_or_create(self, case: Case, board: Board) -> OpenNote:
        assert case.id is not None
        async with self._db.read() as db:
            row = (await db.exec(select(Note).where(Note.case_id == case.id))).first()
            stored = (
                list(
                    await db.exec(
                        select(NoteUpdate)
                        .where(NoteUpdate.note_id == row.id)
                        .order_by(col(NoteUpdate.id))
                    )
                )
                if row is not None
                else []
            )
        if row is None:
            return await self._create(case, board)
        assert row.id is not None
        shape = self.templates.shape(row.template)
        updates = [self._cipher.open_bytes(_SEAL_FIELD, u.data) for u in stored]
        document = NoteDocument.restore(shape, updates)
        if len(stored) > _COMPACT_AFTER:
            await self._compact(row.id, stored[-1].id or 0, document.state())
        return OpenNote(row.id, case.id, case.number, row.template, row.status, document)

    async def _create(self, case: Case, board: Board) -> OpenNote:
        assert case.id is not None
        template = self.template_of(board)
        document, skeleton = NoteDocument.fresh(self.templates.shape(template))
        now = utcnow()
        async with self._db.write() as db:
            row = Note(case_id=case.id, template=template, created_at=now, updated_at=now)
            db.add(row)
            await db.flush()
            assert row.id is not None
            db.add(NoteUpdate(note_id=row.id, data=self._seal(skeleton), at=now))
        log.info("NoteStore: note of case id %s created (template %s)", case.id, template)
        return OpenNote(row.id, case.id, case.number, template, row.status, document)

    async def _compact(self, note_id: int, last_id: int, state: bytes) -> None:
        # Rows written after ``last_id`` (none while loading, but be exact) are kept.
        async with self._db.write() as db:
            await db.exec(
                delete(NoteUpdate).where(
                    col(NoteUpdate.note_id) == note_id, col(NoteUpdate.id) <= last_id
                )
            )
            db.add(NoteUpdate(note_id=note_id, data=self._seal(state), at=utcnow()))

    def _seal(self, update: bytes) -> bytes:
        return self._cipher.seal_bytes(_SEAL_FIELD, update)

    async def apply(self, note: OpenNote, update: bytes, author_id: int | None) -> None:
        """Check ``update`` against the note, store it, and return once it is durable."""
        if note.readonly:
            raise Conflict.on(
                "case_id",
                f"the note of case {note.case_number} is finalized and read-only; "
                "a correction is an amendment",
            )
        if note.frozen:
            raise Conflict.on("case_id", f"the note of case {note.case_number} is being finalized")
        note.document.apply(update)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        note.in_flight.add(done)
        self._queue.append(_Append(note.note_id, self._seal(update), author_id, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        try:
            await asyncio.shield(done)
        except Exception:
            # The replica holds an edit the database does not: read the note afresh next time.
            self._open.pop(note.case_id, None)
            raise
        finally:
            note.in_flight.discard(done)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self._db.write() as db:
                    now = utcnow()
                    for item in batch:
                        db.add(
                            NoteUpdate(
                                note_id=item.note_id,
                                data=item.data,
                                author_id=item.author_id,
                                at=now,
                            )
                        )
            except Exception as exc:  # every waiter is told; none is acknowledged
                log.error("NoteStore: %d updates could not be stored", len(batch), exc_info=exc)
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
            else:
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)

    async def settle(self, note: OpenNote) -> None:
        """Wait until every update applied so far is durable."""
        if note.in_flight:
            await asyncio.gather(*note.in_flight, return_exceptions=True)

    def subscribe(self, listener: StatusListener) -> None:
        """Be told whenever a note is finalized or an amendment opens."""
        self._listeners.append(listener)

    async def set_status(self, note: OpenNote, status: str) -> None:
        note.status = status
        for listener in self._listeners:
            await listener(note)

    def release(self, case_id: int) -> None:
        """Nobody has the note open any more: drop the replica (it is all in the database)."""
        note = self._open.get(case_id)
        if note is not None and not note.in_flight and not note.frozen:
            del self._open[case_id]

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
