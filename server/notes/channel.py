"""NoteChannel: the consensus-note events of the ``/board`` namespace (open, update, focus,
close), and the presence of who is in which field. Signalling authenticates, rate-limits and
validates each event against its schema before handing it here."""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

import socketio

from ..access import case_for, membership
from ..audit import AuditLog
from ..db import Database
from ..errors import Forbidden, Invalid
from ..models import Board, User
from .store import NoteStore, OpenNote

__all__ = ["NoteChannel", "note_room"]

log = logging.getLogger(__name__)

# Board roles that write into the note; observers (and staff who only see the case) read it.
WRITERS = frozenset({"chair", "specialist", "coordinator"})


def note_room(case_id: int) -> str:
    return f"note-{case_id}"


@dataclass
class _Reader:
    user_id: int
    name: str
    writes: bool
    field: str | None = None


class NoteChannel:
    """Who has which note open on which connection, and the events that change notes."""

    def __init__(
        self, namespace: socketio.AsyncNamespace, db: Database, audit: AuditLog, store: NoteStore
    ) -> None:
        self._ns = namespace
        self._db = db
        self._audit = audit
        self._store = store
        self._readers: dict[int, dict[str, _Reader]] = {}  # case id -> sid -> reader
        store.subscribe(self._status_changed)

    async def open(self, sid: str, user_id: int, data: dict[str, Any]) -> dict[str, Any]:
        case_id = int(data["case_id"])
        async with self._db.read() as db:
            user = await db.get(User, user_id)
            assert user is not None
            case = await case_for(db, user, case_id)
            board = await db.get(Board, case.board_id)
            assert board is not None
            assert board.id is not None
            member = await membership(db, board.id, user_id)
        note = await self._store.load(case, board)
        writes = member is not None and member.role in WRITERS
        readers = self._readers.setdefault(case_id, {})
        if sid not in readers:
            async with self._db.write() as db:
                await self._audit.append(
                    db, actor_id=user_id, action="note.open", target_type="case", target_id=case_id
                )
        readers[sid] = _Reader(user_id, user.display_name, writes)
        # In the room first, then the state: an update in between arrives twice, which a CRDT
        # shrugs off, rather than not at all.
        await self._ns.enter_room(sid, note_room(case_id))
        return {
            "ok": True,
            "case_id": case_id,
            "template": note.template,
            "status": note.status,
            "readonly": note.readonly or not writes,
            "update": base64.b64encode(note.document.state()).decode("ascii"),
            "presence": self._presence(case_id),
        }

    async def close(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        await self._leave(sid, int(data["case_id"]))
        return {"ok": True}

    async def update(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        case_id = int(data["case_id"])
        reader, note = self._open_note(sid, case_id)
        if not reader.writes:
            raise Forbidden(f"you may read but not write the note of case {note.case_number}")
        try:
            update = base64.b64decode(data["update"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Invalid.on("update", "is not base64") from exc
        await self._store.apply(note, update, reader.user_id)
        await self._ns.emit(
            "note-updated",
            {"case_id": case_id, "update": data["update"]},
            room=note_room(case_id),
            skip_sid=sid,
        )
        return {"ok": True, "case_id": case_id}

    async def focus(self, sid: str, data: dict[str, Any]) -> dict[str, Any]:
        case_id = int(data["case_id"])
        reader, _ = self._open_note(sid, case_id)
        reader.field = data["field"]
        await self._tell_presence(case_id)
        return {"ok": True}

    async def disconnect(self, sid: str) -> None:
        for case_id in [c for c, readers in self._readers.items() if sid in readers]:
            await self._leave(sid, case_id)

    def _open_note(self, sid: str, case_id: int) -> tuple[_Reader, OpenNote]:
        reader = self._readers.get(case_id, {}).get(sid)
        note = self._store.opened(case_id)
        if reader is None or note is None:
            raise Forbidden.on("case_id", f"open the note of case id {case_id} first (note-open)")
        return reader, note

    async def _leave(self, sid: str, case_id: int) -> None:
        readers = self._readers.get(case_id, {})
        if readers.pop(sid, None) is None:
            return
        await self._ns.leave_room(sid, note_room(case_id))
        if readers:
            await self._tell_presence(case_id)
        else:
            del self._readers[case_id]
            self._store.release(case_id)

    def _presence(self, case_id: int) -> list[dict[str, Any]]:
        seen: dict[int, dict[str, Any]] = {}
        for r in self._readers.get(case_id, {}).values():
            if r.user_id not in seen or r.field is not None:
                seen[r.user_id] = {"user_id": r.user_id, "name": r.name, "field": r.field}
        return list(seen.values())

    async def _tell_presence(self, case_id: int) -> None:
        await self._ns.emit(
            "note-presence",
            {"case_id": case_id, "participants": self._presence(case_id)},
            room=note_room(case_id),
        )

    async def _status_changed(self, note: OpenNote) -> None:
        for sid, reader in self._readers.get(note.case_id, {}).items():
            await self._ns.emit(
                "note-state",
                {
                    "case_id": note.case_id,
                    "status": note.status,
                    "readonly": note.readonly or not reader.writes,
                    "version": None,
                },
                to=sid,
            )
