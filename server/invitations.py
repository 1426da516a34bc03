"""Invitations: signed, expiring, single-use links that let an external specialist join a board."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from .accounts import SPECIALTIES, check_email, create_user
from .boards import add_member
from .db import AsyncSession
from .errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from .imaging.copies import for_new_member
from .models import Board, Institution, Invitation, User, utcnow
from .security import Role
from .services import Services

__all__ = ["invite", "inspect", "accept"]


async def invite(
    session: AsyncSession,
    services: Services,
    board: Board,
    by: User,
    *,
    institution_id: int,
    specialty: str,
    email: str,
) -> tuple[Invitation, str]:
    check_email(email)
    if specialty not in SPECIALTIES:
        raise Invalid.on("specialty", f"unknown specialty {specialty!r}")
    if await session.get(Institution, institution_id) is None:
        raise Invalid.on("institution_id", f"no institution {institution_id}")
    assert board.id is not None and by.id is not None
    ttl = services.settings.invitation_ttl_seconds
    jti = secrets.token_urlsafe(16)
    token, exp = services.tokens.issue("invite", jti, ttl, board=board.id)
    invitation = Invitation(
        id=jti,
        board_id=board.id,
        institution_id=institution_id,
        specialty=specialty,
        email=email,
        created_by=by.id,
        expires_at=datetime.fromtimestamp(exp, UTC),
    )
    session.add(invitation)
    await session.flush()
    return invitation, token


async def inspect(session: AsyncSession, services: Services, token: str) -> Invitation:
    """The invitation a token names, if the token is genuine, unexpired and unused."""
    claims = services.tokens.verify("invite", token)
    invitation = await session.get(Invitation, claims.subject)
    if invitation is None or claims.extra.get("board") != invitation.board_id:
        raise Unauthenticated("invitation is invalid (unknown invitation)")
    if invitation.accepted_by is not None:
        raise Conflict.on("token", "invitation has already been used")
    if invitation.expires_at <= utcnow():
        raise Unauthenticated("invitation has expired")
    return invitation


async def accept(
    session: AsyncSession,
    services: Services,
    *,
    token: str,
    board_id: int,
    username: str,
    password: str,
    display_name: str,
) -> User:
    invitation = await inspect(session, services, token)
    if invitation.board_id != board_id:
        raise Forbidden(f"this invitation is for another board, not board {board_id}")
    board = await session.get(Board, board_id)
    if board is None:
        raise NotFound(f"no board {board_id}")
    if not display_name.strip():
        raise Invalid.on("display_name", "must not be empty")
    user = await create_user(
        session,
        services,
        username=username,
        password=password,
        display_name=display_name.strip(),
        role=Role.SPECIALIST,
        institution_id=invitation.institution_id,
        specialty=invitation.specialty,
        email=invitation.email,
    )
    assert user.id is not None
    member = await add_member(session, board, user.id, "specialist")
    # The new member sees the board's imaging stored before they came (de-identified copies).
    await for_new_member(session, services.dicom, services.audit, board, member, actor_id=user.id)
    invitation.accepted_by = user.id
    invitation.accepted_at = utcnow()
    session.add(invitation)
    await session.flush()
    return user
