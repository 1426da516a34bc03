"""Note fixtures: a case discussed at a session that has begun (with attendance from media
joins), and a pycrdt replica that edits a note the way a browser's Yjs document does."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pycrdt
import pytest
from aiohttp.test_utils import TestServer
from sqlmodel import select

from server.attendance import open_span
from server.models import AgendaItem, BoardSession, Case, User, utcnow
from server.notes.document import ROOT
from server.services import SERVICES, Services

from ..peers import Peer

ATTENDEES = ("chair", "radiologist", "pathologist", "surgeon", "external")


@dataclass
class Replica:
    """One client's copy of a note, opened through a Peer."""

    peer: Peer
    case_id: int
    doc: pycrdt.Doc = field(default_factory=pycrdt.Doc)
    acked: list[str] = field(default_factory=list)

    async def open(self) -> dict[str, Any]:
        ack = await self.peer.call("note-open", {"case_id": self.case_id})
        assert ack["ok"], ack
        self.doc.apply_update(base64.b64decode(ack["update"]))
        return dict(ack)

    @property
    def note(self) -> pycrdt.Map[Any]:
        return self.doc.get(ROOT, type=pycrdt.Map)

    def catch_up(self) -> None:
        """Apply every update the server relayed to this peer."""
        for data in self.peer.seen("note-updated"):
            if data["case_id"] == self.case_id:
                self.doc.apply_update(base64.b64decode(data["update"]))

    async def edit(self, change: Any) -> dict[str, Any]:
        """Run ``change(note_map)`` in one transaction and send what it changed."""
        before = self.doc.get_state()
        with self.doc.transaction():
            change(self.note)
        return await self.send(self.doc.get_update(before))

    async def send(self, update: bytes) -> dict[str, Any]:
        encoded = base64.b64encode(update).decode()
        ack = await self.peer.call("note-update", {"case_id": self.case_id, "update": encoded})
        if ack.get("ok"):
            self.acked.append(encoded)
        return dict(ack)


@pytest.fixture
def served(server: TestServer) -> Services:
    """The services of the app behind the socket.io ``server`` (not the ``client`` app)."""
    return server.app[SERVICES]


@pytest.fixture
async def discussed(services: Services, ids: dict[str, int]) -> int:
    """The demo's ready case on the agenda of a session that began an hour ago, attended (by
    media joins) by five members; returns the case id."""
    case_id = ids["ready_case"]
    now = utcnow()
    async with services.db.write() as db:
        case = await db.get(Case, case_id)
        assert case is not None
        meeting = BoardSession(
            board_id=case.board_id,
            start_at=now - timedelta(hours=1),
            end_at=now + timedelta(hours=1),
            origin="added",
        )
        db.add(meeting)
        await db.flush()
        assert meeting.id is not None
        item = AgendaItem(session_id=meeting.id, case_id=case_id, position=0, timebox_minutes=15)
        db.add(item)
        await db.flush()
        users = await db.exec(select(User).where(User.username.in_(ATTENDEES)))  # type: ignore[attr-defined]
        for i, user in enumerate(users):
            assert user.id is not None
            joined = now - timedelta(minutes=50 - i)
            await open_span(db, meeting.id, user, item.id, joined, left=now - timedelta(minutes=20))
    return case_id
