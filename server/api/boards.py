"""REST: boards, their members, sessions and invitations."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from pydantic import BaseModel, Field
from sqlmodel import col, select

from ..access import board_for, visible_board_ids
from ..boards import (
    BoardSpec,
    add_member,
    add_session,
    board_json,
    create_board,
    session_json,
    sessions_of,
)
from ..errors import Invalid
from ..imaging.copies import for_new_member
from ..imaging.dicomweb import METADATA
from ..invitations import invite
from ..models import Board
from .queries import SessionRangeQuery, ViewerQuery
from .responses import BoardList, BoardOut, InvitationOut, MemberAdded, SessionList, SessionOut
from .roles import EVERYONE, MANAGERS
from .routing import Call, RouteTable

routes = RouteTable()


class BoardIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    tumor_site: str = Field(min_length=1, max_length=32)
    timezone: str
    rrule: str = Field(min_length=1, max_length=500)
    start_time: str
    start_date: date | None = None
    duration_minutes: int = 90
    required_specialties: list[str] = Field(default_factory=list)
    readiness_max_age_days: int = 90
    note_template: str | None = Field(default=None, max_length=32)


class MemberIn(BaseModel):
    user_id: int
    role: str


class SessionIn(BaseModel):
    start: datetime
    end: datetime


class InvitationIn(BaseModel):
    institution_id: int
    specialty: str
    email: str = Field(default="", max_length=200)


@routes.add(
    "GET",
    "/api/boards",
    roles=EVERYONE,
    summary="List boards",
    tag="boards",
    response=BoardList,
    query=ViewerQuery,
)
async def list_boards(call: Call) -> dict[str, object]:
    ids = await visible_board_ids(call.session, call.me)
    query = select(Board).where(col(Board.id).in_(ids)).order_by(col(Board.id))
    boards = list(await call.session.exec(query))
    return {"items": [await board_json(call.session, b, call.viewer_tz) for b in boards]}


@routes.add(
    "POST",
    "/api/boards",
    roles=MANAGERS,
    summary="Create a board",
    body=BoardIn,
    status=201,
    tag="boards",
    response=BoardOut,
    query=ViewerQuery,
)
async def post_board(call: Call) -> dict[str, object]:
    b: BoardIn = call.body
    viewer_tz = call.viewer_tz
    templates = call.services.notes.templates.ids()
    if b.note_template is not None and b.note_template not in templates:
        raise Invalid.on(
            "note_template",
            f"unknown template {b.note_template!r}; templates are {', '.join(templates)}",
        )
    board = await create_board(
        call.session,
        BoardSpec(**b.model_dump()),
        home_institution_id=call.me.institution_id,
        horizon_weeks=call.services.settings.session_horizon_weeks,
    )
    assert call.me.id is not None
    await add_member(call.session, board, call.me.id, "coordinator")
    await call.audit(
        action="board.create",
        target_type="board",
        target_id=board.id,
    )
    return await board_json(call.session, board, viewer_tz)


@routes.add(
    "GET",
    "/api/boards/{board_id}",
    roles=EVERYONE,
    summary="Show a board",
    tag="boards",
    response=BoardOut,
    query=ViewerQuery,
)
async def get_board(call: Call) -> dict[str, object]:
    board = await board_for(call.session, call.me, call.int_param("board_id"))
    return await board_json(call.session, board, call.viewer_tz)


@routes.add(
    "POST",
    "/api/boards/{board_id}/members",
    roles=MANAGERS,
    summary="Add a board member",
    body=MemberIn,
    status=201,
    tag="boards",
    response=MemberAdded,
    answers=(409,),
)
async def post_member(call: Call) -> dict[str, object]:
    board = await board_for(call.session, call.me, call.int_param("board_id"))
    member = await add_member(call.session, board, call.body.user_id, call.body.role)
    # An external member gets the de-identified copies of imaging stored before they came.
    copied = await for_new_member(
        call.session, call.services.dicom, call.services.audit, board, member, actor_id=call.me.id
    )
    for copy in copied.series:
        assert copy.id is not None
        call.request.app[METADATA].forget(copy.id)
    await call.audit(
        action="board.member.add",
        target_type="board",
        target_id=board.id,
        detail={"user_id": member.user_id, "role": member.role},
    )
    return {
        "board_id": board.id,
        "user_id": member.user_id,
        "role": member.role,
        "copies": {"instances": copied.instances, "failed_studies": copied.failed_studies},
    }


def _day(call: Call, name: str) -> datetime | None:
    raw = call.request.query.get(name)
    if not raw:
        return None
    try:
        return datetime.combine(date.fromisoformat(raw), time(0), UTC)
    except ValueError as exc:
        raise Invalid.on(name, f"{raw!r} is not a date as YYYY-MM-DD") from exc


@routes.add(
    "GET",
    "/api/boards/{board_id}/sessions",
    roles=EVERYONE,
    summary="List a board's sessions",
    tag="sessions",
    response=SessionList,
    query=SessionRangeQuery,
)
async def list_sessions(call: Call) -> dict[str, object]:
    board = await board_for(call.session, call.me, call.int_param("board_id"))
    viewer_tz = call.viewer_tz
    start = _day(call, "from") or datetime.now(UTC)
    items = await sessions_of(call.session, board.id or 0, start=start, end=_day(call, "to"))
    return {"items": [await session_json(call.session, s, board, viewer_tz) for s in items]}


@routes.add(
    "POST",
    "/api/boards/{board_id}/sessions",
    roles=MANAGERS,
    summary="Add a session to a board",
    body=SessionIn,
    status=201,
    tag="sessions",
    response=SessionOut,
    query=ViewerQuery,
)
async def post_session(call: Call) -> dict[str, object]:
    board = await board_for(call.session, call.me, call.int_param("board_id"))
    item = await add_session(call.session, board, call.body.start, call.body.end)
    await call.audit(
        action="session.add",
        target_type="session",
        target_id=item.id,
    )
    return await session_json(call.session, item, board, call.viewer_tz)


@routes.add(
    "POST",
    "/api/boards/{board_id}/invitations",
    roles=MANAGERS,
    summary="Invite an external specialist to a board",
    body=InvitationIn,
    status=201,
    tag="boards",
    response=InvitationOut,
)
async def post_invitation(call: Call) -> dict[str, object]:
    board = await board_for(call.session, call.me, call.int_param("board_id"))
    b: InvitationIn = call.body
    invitation, token = await invite(
        call.session,
        call.services,
        board,
        call.me,
        institution_id=b.institution_id,
        specialty=b.specialty,
        email=b.email,
    )
    await call.audit(
        action="invitation.create",
        target_type="board",
        target_id=board.id,
        detail={"invitation": invitation.id},
    )
    base = call.services.settings.effective_public_url
    return {
        "token": token,
        "url": f"{base}/#/join/{board.id}?token={token}",
        "expires_at": invitation.expires_at.isoformat(),
    }
