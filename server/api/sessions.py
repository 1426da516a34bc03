"""REST: one session, its calendar entries, and its agenda."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from sqlmodel import col, select

from ..access import board_for, may_join, visible_board_ids
from ..agenda import add_item, agenda_json, get_item, remove_item, reorder, update_item
from ..boards import cancel_session, get_session, members_of, session_json
from ..live import ICE, participant_id
from ..models import AgendaItem, Board, BoardSession, utcnow
from ..scheduling import CalendarEntry, calendar_ics
from .queries import ViewerQuery
from .responses import AgendaItemOut, AgendaOut, IceServersOut, SessionOut
from .roles import EVERYONE, JOINERS, MANAGERS
from .routing import Call, RouteTable

routes = RouteTable()


class AgendaItemIn(BaseModel):
    case_id: int
    timebox_minutes: int
    lane: str = "discussion"


class AgendaOrderIn(BaseModel):
    item_ids: list[int]


class AgendaItemPatch(BaseModel):
    timebox_minutes: int | None = None
    lane: str | None = None


def _item_of(agenda: dict[str, Any], item_id: int | None) -> dict[str, object]:
    item: dict[str, object] = next(i for i in agenda["items"] if i["id"] == item_id)
    return item


async def _session_and_board(call: Call) -> tuple[BoardSession, Board]:
    item = await get_session(call.session, call.int_param("session_id"))
    board = await board_for(call.session, call.me, item.board_id)
    return item, board


@routes.add(
    "GET",
    "/api/sessions/{session_id}",
    roles=EVERYONE,
    summary="Show a session",
    tag="sessions",
    response=SessionOut,
    query=ViewerQuery,
)
async def get_one(call: Call) -> dict[str, object]:
    item, board = await _session_and_board(call)
    return await session_json(call.session, item, board, call.viewer_tz)


@routes.add(
    "GET",
    "/api/sessions/{session_id}/ice-servers",
    roles=JOINERS,
    summary="Get the STUN and TURN servers to join a session's live room",
    tag="sessions",
    response=IceServersOut,
)
async def get_ice_servers(call: Call) -> dict[str, object]:
    """What the join's acknowledgement carries, ahead of it: the room asks while its socket
    connects, so its first offer is ready to go with the join. Only to those who may join now
    (the join's own refusals); TURN credentials are the user's own."""
    me = call.me
    await may_join(call.session, me, call.int_param("session_id"))
    assert me.id is not None
    servers = call.request.app[ICE].servers_for(participant_id(me.id))
    return {"ice_servers": [asdict(s) for s in servers]}


@routes.add(
    "POST",
    "/api/sessions/{session_id}/cancel",
    roles=MANAGERS,
    summary="Cancel a session",
    tag="sessions",
    response=SessionOut,
    query=ViewerQuery,
    answers=(409,),
)
async def post_cancel(call: Call) -> dict[str, object]:
    item, board = await _session_and_board(call)
    await cancel_session(call.session, item)
    await call.audit(
        action="session.cancel",
        target_type="session",
        target_id=item.id,
    )
    return await session_json(call.session, item, board, call.viewer_tz)


async def _entry(call: Call, item: BoardSession, board: Board) -> CalendarEntry:
    members = await members_of(call.session, board.id or 0)
    organizer = next(
        (
            (u.email or f"{u.username}@eboard.invalid", u.display_name)
            for m, u in members
            if m.role == "coordinator"
        ),
        None,
    )
    base = call.services.settings.effective_public_url
    url = f"{base}/#/sessions/{item.id}"
    return CalendarEntry(
        uid=f"session-{item.id}-board-{board.id}@eboard",
        summary=f"{board.name} — tumor board",
        start=item.start_at,
        end=item.end_at,
        tz_name=board.timezone,
        url=url,
        description=f"{board.name} ({board.tumor_site}). Join: {url}",
        organizer=organizer,
        attendees=[(u.email or f"{u.username}@eboard.invalid", u.display_name) for _, u in members],
        cancelled=item.status == "cancelled",
    )


def _ics(body: bytes, filename: str) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@routes.add(
    "GET",
    "/api/sessions/{session_id}/calendar.ics",
    roles=EVERYONE,
    summary="Download a session as iCalendar",
    tag="sessions",
    media_types=("text/calendar",),
)
async def get_session_ics(call: Call) -> web.Response:
    item, board = await _session_and_board(call)
    entry = await _entry(call, item, board)
    return _ics(calendar_ics([entry], name=board.name), f"session-{item.id}.ics")


@routes.add(
    "GET",
    "/api/me/calendar.ics",
    roles=EVERYONE,
    summary="Download my sessions as an iCalendar feed",
    tag="sessions",
    media_types=("text/calendar",),
)
async def get_my_ics(call: Call) -> web.Response:
    ids = await visible_board_ids(call.session, call.me)
    query = select(BoardSession, Board).where(
        BoardSession.board_id == Board.id,
        col(Board.id).in_(ids),
        col(BoardSession.start_at) >= utcnow(),
    )
    rows = list(await call.session.exec(query.order_by(col(BoardSession.start_at)).limit(500)))
    entries = [await _entry(call, item, board) for item, board in rows]
    return _ics(calendar_ics(entries, name="eBoard sessions"), "eboard.ics")


@routes.add(
    "GET",
    "/api/sessions/{session_id}/agenda",
    roles=EVERYONE,
    summary="Show a session's agenda",
    tag="agenda",
    response=AgendaOut,
    query=ViewerQuery,
)
async def get_agenda(call: Call) -> dict[str, object]:
    item, board = await _session_and_board(call)
    return await agenda_json(call.session, item, board, call.viewer_tz)


@routes.add(
    "POST",
    "/api/sessions/{session_id}/agenda",
    roles=MANAGERS,
    summary="Add a case to a session's agenda",
    body=AgendaItemIn,
    status=201,
    tag="agenda",
    response=AgendaItemOut,
    query=ViewerQuery,
    answers=(409,),
)
async def post_agenda_item(call: Call) -> dict[str, object]:
    item, board = await _session_and_board(call)
    b: AgendaItemIn = call.body
    added = await add_item(call.session, item, b.case_id, b.timebox_minutes, b.lane)
    await call.audit(
        action="agenda.add",
        target_type="session",
        target_id=item.id,
        detail={"case_id": b.case_id},
    )
    agenda = await agenda_json(call.session, item, board, call.viewer_tz)
    return _item_of(agenda, added.id)


@routes.add(
    "PUT",
    "/api/sessions/{session_id}/agenda/order",
    roles=MANAGERS,
    summary="Reorder a session's agenda",
    body=AgendaOrderIn,
    tag="agenda",
    response=AgendaOut,
    query=ViewerQuery,
    answers=(409,),
)
async def put_order(call: Call) -> dict[str, object]:
    item, board = await _session_and_board(call)
    await reorder(call.session, item, call.body.item_ids)
    await call.audit(
        action="agenda.reorder",
        target_type="session",
        target_id=item.id,
    )
    return await agenda_json(call.session, item, board, call.viewer_tz)


async def _agenda_item(call: Call) -> tuple[AgendaItem, BoardSession, Board]:
    agenda_item = await get_item(call.session, call.int_param("item_id"))
    board_session = await get_session(call.session, agenda_item.session_id)
    board = await board_for(call.session, call.me, board_session.board_id)
    return agenda_item, board_session, board


@routes.add(
    "PATCH",
    "/api/agenda-items/{item_id}",
    roles=MANAGERS,
    summary="Change an agenda item's time-box or lane",
    body=AgendaItemPatch,
    tag="agenda",
    response=AgendaItemOut,
    query=ViewerQuery,
    answers=(409,),
)
async def patch_agenda_item(call: Call) -> dict[str, object]:
    agenda_item, board_session, board = await _agenda_item(call)
    b: AgendaItemPatch = call.body
    await update_item(call.session, agenda_item, timebox=b.timebox_minutes, lane=b.lane)
    await call.audit(
        action="agenda.update",
        target_type="agenda_item",
        target_id=call.int_param("item_id"),
    )
    agenda = await agenda_json(call.session, board_session, board, call.viewer_tz)
    return _item_of(agenda, call.int_param("item_id"))


@routes.add(
    "DELETE",
    "/api/agenda-items/{item_id}",
    roles=MANAGERS,
    summary="Remove a case from an agenda",
    status=204,
    tag="agenda",
    answers=(409,),
)
async def delete_agenda_item(call: Call) -> None:
    agenda_item, board_session, _ = await _agenda_item(call)
    await remove_item(call.session, agenda_item)
    await call.audit(
        action="agenda.remove",
        target_type="session",
        target_id=board_session.id,
    )
