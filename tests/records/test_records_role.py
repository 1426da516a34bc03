"""Records staff find and export plans; they never join a live session, even if a board lists
them as a member."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer
from sqlmodel import select

from server.models import BoardMember, User
from server.services import SERVICES

from ..test_signalling import _next_session


async def test_a_records_officer_listed_on_the_board_is_still_refused_at_join(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    services = server.app[SERVICES]
    async with services.db.write() as db:
        records = (await db.exec(select(User).where(User.username == "records"))).one()
        assert records.id is not None
        db.add(BoardMember(board_id=ids["board_id"], user_id=records.id, role="observer"))
    sid = await _next_session(server, auth, ids["board_id"])
    chair = await connect("chair")
    assert (await chair.call("join", {"session_id": sid}))["ok"] is True

    clerk = await connect("records")
    reply = await clerk.call("join", {"session_id": sid})
    assert reply["ok"] is False
    assert "records staff" in reply["error"]["message"]
    # The chair's session goes on without a newcomer.
    assert not [d for d in chair.seen("participant") if d.get("name") == records.display_name]
    assert (await chair.call("chat", {"text": "still here"}))["ok"] is True
