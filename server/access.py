"""Access: which boards and cases a user may see, and whether they see identifiers."""

from __future__ import annotations

from sqlmodel import select

from .db import AsyncSession
from .errors import Conflict, Forbidden, NotFound
from .models import Board, BoardMember, BoardSession, Case, User, utcnow
from .security import Role

__all__ = [
    "MANAGERS",
    "is_manager",
    "board_for",
    "visible_board_ids",
    "sees_institution_boards",
    "case_for",
    "is_external",
    "member_board_ids",
    "board_has_external_members",
    "membership",
    "may_join",
]

MANAGERS = frozenset({Role.ADMIN, Role.COORDINATOR})


def is_manager(user: User) -> bool:
    return Role(user.role) in MANAGERS


async def membership(session: AsyncSession, board_id: int, user_id: int) -> BoardMember | None:
    """The user's membership of the board (with their board role), if any."""
    query = select(BoardMember).where(
        BoardMember.board_id == board_id, BoardMember.user_id == user_id
    )
    return (await session.exec(query)).first()


async def member_board_ids(session: AsyncSession, user: User) -> set[int]:
    rows = await session.exec(select(BoardMember.board_id).where(BoardMember.user_id == user.id))
    return set(rows)


def sees_institution_boards(user: User) -> bool:
    """Managers and records staff see every board of their own institution."""
    return is_manager(user) or Role(user.role) == Role.RECORDS


async def visible_board_ids(session: AsyncSession, user: User) -> set[int]:
    """The boards ``user`` may see: those they are a member of, and for managers and records
    staff every board of their institution (never another institution's)."""
    ids = await member_board_ids(session, user)
    if sees_institution_boards(user):
        rows = await session.exec(
            select(Board.id).where(Board.home_institution_id == user.institution_id)
        )
        ids |= {i for i in rows if i is not None}
    return ids


async def board_for(session: AsyncSession, user: User, board_id: int) -> Board:
    """The board, if ``user`` may see it (see ``visible_board_ids``)."""
    board = await session.get(Board, board_id)
    if board is None:
        raise NotFound(f"no board {board_id}")
    if sees_institution_boards(user) and user.institution_id == board.home_institution_id:
        return board
    if board_id not in await member_board_ids(session, user):
        raise Forbidden(f"you are not a member of board {board_id}")
    return board


def is_external(user: User, case: Case) -> bool:
    """An external participant belongs to an institution other than the case's."""
    return user.institution_id != case.home_institution_id


async def case_for(session: AsyncSession, user: User, case_id: int) -> Case:
    """The case, if ``user`` may see it. External members see only cases whose patient
    consented to external review (and then only a de-identified view). A refusal names only
    the id asked for: never the case's number, patient or board."""
    case = await session.get(Case, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}")
    if is_external(user, case):
        # Managers and records staff work on their own institution's cases only, even where a
        # board of another lists them.
        if is_manager(user) or Role(user.role) == Role.RECORDS:
            raise Forbidden(f"case {case_id} is another institution's")
        if case.board_id not in await member_board_ids(session, user):
            raise Forbidden(f"you are not a member of the board of case {case_id}")
        if case.consent_external is not True:
            raise Forbidden(f"case {case_id} is not open to external review")
        return case
    if is_manager(user) or Role(user.role) == Role.RECORDS:
        return case
    if case.board_id not in await member_board_ids(session, user):
        raise Forbidden(f"you are not a member of the board of case {case_id}")
    return case


async def board_has_external_members(session: AsyncSession, board: Board) -> bool:
    rows = await session.exec(
        select(User.institution_id).where(
            BoardMember.board_id == board.id, BoardMember.user_id == User.id
        )
    )
    return any(inst != board.home_institution_id for inst in rows)


async def may_join(
    session: AsyncSession, user: User, session_id: int
) -> tuple[BoardSession, BoardMember]:
    """The session and the user's membership of its board, if the user may join its live
    room now: a board member (records staff never), the session neither cancelled nor over.
    Otherwise the refusal, naming ``session_id`` where it is about the session."""
    assert user.id is not None
    if user.role == Role.RECORDS:
        raise Forbidden("records staff find and export agreed plans; they do not join sessions")
    meeting = await session.get(BoardSession, session_id)
    if meeting is None:
        raise NotFound.on("session_id", f"no session {session_id}")
    if meeting.status == "cancelled":
        raise Conflict.on("session_id", f"session {session_id} was cancelled")
    if meeting.end_at <= utcnow():
        raise Conflict.on("session_id", f"session {session_id} is over")
    member = await membership(session, meeting.board_id, user.id)
    if member is None:
        raise Forbidden(f"you are not invited to session {session_id}")
    return meeting, member
