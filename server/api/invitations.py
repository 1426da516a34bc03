"""REST: looking at and accepting an invitation (no login needed: the link is the credential)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from ..invitations import accept, inspect
from ..models import Board, Institution
from .auth import issue_login
from .responses import InvitationShown, LoginOut
from .routing import PUBLIC, Call, RouteTable

routes = RouteTable()


class AcceptIn(BaseModel):
    token: str = Field(min_length=1, max_length=4096)
    board_id: int
    username: str
    password: str
    display_name: str = Field(min_length=1, max_length=200)


@routes.add(
    "GET",
    "/api/invitations/{token}",
    roles=PUBLIC,
    summary="Show an invitation",
    tag="invitations",
    response=InvitationShown,
    answers=(401, 409),
)
async def get_invitation(call: Call) -> dict[str, object]:
    invitation = await inspect(call.session, call.services, call.request.match_info["token"])
    board = await call.session.get(Board, invitation.board_id)
    institution = await call.session.get(Institution, invitation.institution_id)
    assert board is not None and institution is not None
    return {
        "board_id": board.id,
        "board_name": board.name,
        "specialty": invitation.specialty,
        "institution_name": institution.name,
        "expires_at": invitation.expires_at.isoformat(),
    }


@routes.add(
    "POST",
    "/api/invitations/accept",
    roles=PUBLIC,
    summary="Accept an invitation and create an account",
    body=AcceptIn,
    status=201,
    tag="invitations",
    response=LoginOut,
    answers=(401, 403, 409),
)
async def post_accept(call: Call) -> web.Response:
    b: AcceptIn = call.body
    user = await accept(
        call.session,
        call.services,
        token=b.token,
        board_id=b.board_id,
        username=b.username,
        password=b.password,
        display_name=b.display_name,
    )
    await call.services.audit.append(
        call.session,
        actor_id=user.id,
        action="invitation.accept",
        target_type="board",
        target_id=b.board_id,
    )
    return await issue_login(call, user, status=201)
