"""The agreed plan: finalizing a case's note (validate, attach attendance, canonicalize, sign,
store), amendments, and the follow-up of each recommendation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from ..access import case_for, membership
from ..audit import AuditLog
from ..crypto import FieldCipher
from ..db import AsyncSession, Database
from ..errors import Conflict, Forbidden, Invalid, NotFound
from ..models import (
    AgendaItem,
    AgreedPlan,
    Attendance,
    Board,
    BoardMember,
    BoardSession,
    Case,
    Institution,
    Note,
    PlanFollowup,
    User,
    utcnow,
)
from ..signing import SigningKeys
from .signature import export_file, sign_version, verify_version
from .store import NoteStore, OpenNote

__all__ = [
    "FOLLOWUP_STATUSES",
    "NOT_DONE_REASONS",
    "Discussion",
    "PlanDesk",
    "discussion_of",
]

FOLLOWUP_STATUSES = ("planned", "done", "not_done")
NOT_DONE_REASONS = (
    "patient_choice",
    "change_in_condition",
    "did_not_attend",
    "died",
    "comorbidity",
    "new_information",
    "other",
)
_DOCUMENT_FIELD = "agreed_plan"
_REASON_FIELD = "amendment_reason"
_COMMENT_FIELD = "followup_comment"


def _instant(at: datetime | None) -> str | None:
    return None if at is None else at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Discussion:
    """The session a case was last discussed in, who attended it, and the quorum."""

    session: BoardSession | None
    item: AgendaItem | None
    attendance: list[dict[str, Any]]
    quorum: dict[str, list[str]]

    def session_json(self, board: Board) -> dict[str, Any] | None:
        if self.session is None:
            return None
        return {
            "id": self.session.id,
            "board": board.name,
            "start_at": _instant(self.session.start_at),
            "end_at": _instant(self.session.end_at),
        }


async def discussion_of(db: AsyncSession, case: Case, board: Board) -> Discussion:
    """Attendance comes from the media joins of the agenda item, never typed. The discussion is
    the latest session whose item for this case was attended (boards often start early), or
    else the latest session that has begun with the case on its agenda."""
    rows = await db.exec(
        select(AgendaItem, BoardSession)
        .where(
            AgendaItem.case_id == case.id,
            AgendaItem.session_id == BoardSession.id,
            BoardSession.status != "cancelled",
        )
        .order_by(col(BoardSession.start_at).desc())
    )
    candidates = list(rows)
    attended = set(
        await db.exec(
            select(Attendance.agenda_item_id).where(
                col(Attendance.agenda_item_id).in_([item.id for item, _ in candidates])
            )
        )
    )
    now = utcnow()
    row = next((c for c in candidates if c[0].id in attended), None) or next(
        (c for c in candidates if c[1].start_at <= now), None
    )
    required = list(board.required_specialties)
    if row is None:
        return Discussion(
            None, None, [], {"required": required, "present": [], "missing": required}
        )
    item, meeting = row
    spans = await db.exec(
        select(Attendance, User, Institution)
        .where(
            Attendance.session_id == meeting.id,
            Attendance.agenda_item_id == item.id,
            Attendance.user_id == User.id,
            Attendance.institution_id == Institution.id,
        )
        .order_by(col(Attendance.joined_at), col(Attendance.id))
    )
    roles = dict(
        (
            await db.exec(
                select(BoardMember.user_id, BoardMember.role).where(
                    BoardMember.board_id == board.id
                )
            )
        ).all()
    )
    attendance = [
        {
            "user_id": user.id,
            "name": user.display_name,
            "specialty": span.specialty,
            "institution": institution.code,
            "role": roles.get(user.id or 0, user.role),
            "joined_at": _instant(span.joined_at),
            "left_at": _instant(span.left_at),
        }
        for span, user, institution in spans
    ]
    present = sorted({str(a["specialty"]) for a in attendance if a["specialty"]})
    missing = [s for s in required if s not in present]
    return Discussion(
        meeting, item, attendance, {"required": required, "present": present, "missing": missing}
    )


class PlanDesk:
    """Finalize, amend and follow up agreed plans. Every write here is one unit of work with
    its audit record."""

    def __init__(
        self,
        db: Database,
        cipher: FieldCipher,
        audit: AuditLog,
        signing: SigningKeys,
        notes: NoteStore,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._audit = audit
        self._signing = signing
        self._notes = notes

    # -- reading --------------------------------------------------------------------------------

    async def versions(self, db: AsyncSession, case_id: int) -> list[dict[str, Any]]:
        """Every signed version of the case's plan, oldest first."""
        rows = await db.exec(
            select(AgreedPlan)
            .where(AgreedPlan.case_id == case_id)
            .order_by(col(AgreedPlan.version))
        )
        return [self.signed(row) for row in rows]

    def signed(self, row: AgreedPlan) -> dict[str, Any]:
        raw = self._cipher.open_bytes(_DOCUMENT_FIELD, row.document_enc)
        document: dict[str, Any] = json.loads(raw)
        return document

    def check(self, signed: dict[str, Any]) -> list[str]:
        """What is wrong with a stored version (its hash or signature), or nothing."""
        kid = str(signed.get("signature", {}).get("kid", ""))
        key = self._signing.public(kid)
        if key is None:
            return [f"signature: key {kid} is not one of this server's keys"]
        return verify_version(signed, key)

    def export(self, case: Case, versions: list[dict[str, Any]]) -> bytes:
        return export_file(case.number, versions, self._signing.jwks())

    async def followups(self, db: AsyncSession, case_id: int) -> list[dict[str, Any]]:
        rows = await db.exec(
            select(PlanFollowup)
            .where(PlanFollowup.case_id == case_id)
            .order_by(col(PlanFollowup.rank))
        )
        return [
            {
                "rank": r.rank,
                "type": r.kind,
                "status": r.status,
                "reason": r.reason,
                "comment": self._cipher.open(_COMMENT_FIELD, r.comment_enc)
                if r.comment_enc
                else None,
                "updated_at": _instant(r.updated_at),
            }
            for r in rows
        ]

    # -- finalize -------------------------------------------------------------------------------

    async def finalize(self, user: User, case_id: int) -> AgreedPlan:
        """Sign the note as the case's agreed plan (or as an amendment of it)."""
        async with self._db.read() as db:
            case, board = await self._chaired(db, user, case_id)
        note = await self._notes.load(case, board)
        if note.status == "finalized":
            raise Conflict.on(
                "case_id",
                f"the note of case {case.number} is already finalized; "
                "open an amendment to correct it",
            )
        if note.status == "draft" and case.state not in ("ready", "discussed"):
            raise Conflict.on(
                "state",
                f"case {case.number} is {case.state}: only a case that was ready for or "
                "discussed at a session is finalized",
            )
        note.frozen = True
        try:
            await self._notes.settle(note)
            content = note.document.content()
            errors = self._notes.templates.validate(note.template, content)
            if errors:
                fields = ", ".join(e.field for e in errors)
                raise Invalid(
                    f"the note does not satisfy its template ({note.template}): {fields}", errors
                )
            plan = await self._sign(user, case_id, note, content)
        finally:
            note.frozen = False
        await self._notes.set_status(note, "finalized")
        return plan

    async def _sign(
        self, user: User, case_id: int, note: OpenNote, content: dict[str, Any]
    ) -> AgreedPlan:
        async with self._db.write() as db:
            case, board = await self._chaired(db, user, case_id)
            row = (await db.exec(select(Note).where(Note.case_id == case_id))).one()
            discussion = await discussion_of(db, case, board)
            if discussion.session is None:
                raise Conflict.on(
                    "session",
                    f"case {case.number} has not been discussed at a session yet: "
                    "there is no attendance to attach",
                )
            previous = (
                await db.exec(
                    select(AgreedPlan)
                    .where(AgreedPlan.case_id == case_id)
                    .order_by(col(AgreedPlan.version).desc())
                )
            ).first()
            reason = (
                self._cipher.open(_REASON_FIELD, row.amendment_reason_enc)
                if row.amendment_reason_enc
                else None
            )
            if previous is not None and not reason:
                raise Invalid.on("reason", "an amendment must say why")
            home = await db.get(Institution, case.home_institution_id)
            mine = await db.get(Institution, user.institution_id)
            assert home is not None and mine is not None
            now = utcnow()
            payload = {
                "format": "eboard-agreed-plan/1",
                "case": {"number": case.number, "institution": home.code},
                "version": 1 if previous is None else previous.version + 1,
                "previous": None
                if previous is None
                else {"version": previous.version, "hash": previous.hash},
                "amendment_reason": reason if previous is not None else None,
                "template": note.template,
                "note": content,
                "session": discussion.session_json(board),
                "attendance": [
                    {k: v for k, v in a.items() if k != "user_id"} for a in discussion.attendance
                ],
                "quorum": discussion.quorum,
                "finalized_by": {"name": user.display_name, "institution": mine.code},
                "finalized_at": _instant(now),
            }
            signed = sign_version(payload, lambda data: self._signing.sign(home.code, data))
            raw = json.dumps(signed, ensure_ascii=False, separators=(",", ":")).encode()
            plan = AgreedPlan(
                case_id=case_id,
                version=int(payload["version"]),  # type: ignore[call-overload]
                hash=signed["hash"],
                previous_hash=None if previous is None else previous.hash,
                kid=signed["signature"]["kid"],
                document_enc=self._cipher.seal_bytes(_DOCUMENT_FIELD, raw),
                session_id=discussion.session.id,
                signed_by=user.id or 0,
                signed_at=now,
            )
            db.add(plan)
            row.status = "finalized"
            row.amendment_reason_enc = None
            row.updated_at = now
            db.add(row)
            recommendations = content.get("recommendations", [])
            settled = await self._renew_followups(db, case_id, recommendations, user, now)
            before = case.state
            if previous is None or case.state in ("finalized", "closed"):
                case.state = "closed" if settled else "finalized"
                case.updated_at = now
                db.add(case)
            await self._audit.append(
                db,
                actor_id=user.id,
                action="plan.finalize" if previous is None else "plan.amend",
                target_type="case",
                target_id=case_id,
                detail={
                    "version": plan.version,
                    "hash": plan.hash,
                    "kid": plan.kid,
                    "from": before,
                    "to": case.state,
                },
            )
        return plan

    async def _renew_followups(
        self,
        db: AsyncSession,
        case_id: int,
        recommendations: list[dict[str, Any]],
        user: User,
        now: datetime,
    ) -> bool:
        """One follow-up per recommendation, by rank. After an amendment a rank whose kind
        stayed keeps its status. True when every one is settled."""
        existing = {
            r.rank: r
            for r in await db.exec(select(PlanFollowup).where(PlanFollowup.case_id == case_id))
        }
        ranks = set()
        for index, rec in enumerate(recommendations):
            rank = index + 1
            ranks.add(rank)
            kind = str(rec.get("type", ""))
            row = existing.get(rank)
            if row is None or row.kind != kind:
                row = row or PlanFollowup(case_id=case_id, rank=rank, kind=kind, updated_at=now)
                row.kind, row.status, row.reason, row.comment_enc = kind, "planned", None, None
                row.updated_by, row.updated_at = user.id, now
                db.add(row)
        for rank, row in existing.items():
            if rank not in ranks:
                await db.delete(row)
        await db.flush()
        statuses = [
            r.status
            for r in await db.exec(select(PlanFollowup).where(PlanFollowup.case_id == case_id))
        ]
        return bool(statuses) and all(s != "planned" for s in statuses)

    # -- amendments -----------------------------------------------------------------------------

    async def open_amendment(self, user: User, case_id: int, reason: str) -> None:
        """Reopen the finalized note for a correction; finalizing again signs version n+1."""
        reason = reason.strip()
        if not reason:
            raise Invalid.on("reason", "an amendment must say why (the reason is empty)")
        async with self._db.write() as db:
            case, board = await self._chaired(db, user, case_id)
            row = (await db.exec(select(Note).where(Note.case_id == case_id))).first()
            if row is None or row.status != "finalized":
                state = (
                    "open for an amendment"
                    if row is not None and row.status == "amending"
                    else "not finalized"
                )
                raise Conflict.on("case_id", f"the note of case {case.number} is {state}")
            row.status = "amending"
            row.amendment_reason_enc = self._cipher.seal(_REASON_FIELD, reason)
            row.updated_at = utcnow()
            db.add(row)
            await self._audit.append(
                db,
                actor_id=user.id,
                action="plan.amendment.open",
                target_type="case",
                target_id=case_id,
            )
        note = await self._notes.load(case, board)
        await self._notes.set_status(note, "amending")

    # -- follow-up ------------------------------------------------------------------------------

    async def follow_up(
        self,
        db: AsyncSession,
        user: User,
        case: Case,
        rank: int,
        status: str,
        reason: str | None,
        comment: str | None,
    ) -> None:
        """Record what became of one recommendation; the case closes when all are settled
        (and reopens to finalized if one goes back to planned)."""
        if status not in FOLLOWUP_STATUSES:
            raise Invalid.on("status", f"{status!r} is not one of {', '.join(FOLLOWUP_STATUSES)}")
        if status == "not_done" and reason not in NOT_DONE_REASONS:
            got = (
                "missing"
                if reason is None
                else f"{reason!r} is not one of {', '.join(NOT_DONE_REASONS)}"
            )
            raise Invalid.on("reason", f"a recommendation not done needs a reason: {got}")
        if status != "not_done" and reason is not None:
            raise Invalid.on(
                "reason", f"a reason is given only when the status is not_done (status is {status})"
            )
        if case.state not in ("finalized", "closed"):
            raise Conflict.on(
                "state", f"case {case.number} has no agreed plan to follow up (it is {case.state})"
            )
        row = (
            await db.exec(
                select(PlanFollowup).where(
                    PlanFollowup.case_id == case.id, PlanFollowup.rank == rank
                )
            )
        ).first()
        if row is None:
            raise NotFound.on(
                "rank", f"the agreed plan of case {case.number} has no recommendation {rank}"
            )
        before = row.status
        row.status, row.reason = status, reason
        row.comment_enc = self._cipher.seal(_COMMENT_FIELD, comment) if comment else None
        row.updated_by, row.updated_at = user.id, utcnow()
        db.add(row)
        await db.flush()
        statuses = [
            r.status
            for r in await db.exec(select(PlanFollowup).where(PlanFollowup.case_id == case.id))
        ]
        state = "closed" if all(s != "planned" for s in statuses) else "finalized"
        detail: dict[str, Any] = {"rank": rank, "from": before, "to": status, "reason": reason}
        if state != case.state:
            detail["case"] = {"from": case.state, "to": state}
            case.state, case.updated_at = state, utcnow()
            db.add(case)
        await self._audit.append(
            db,
            actor_id=user.id,
            action="plan.followup",
            target_type="case",
            target_id=case.id,
            detail=detail,
        )

    # -- who --------------------------------------------------------------------------------------

    @staticmethod
    async def _chaired(db: AsyncSession, user: User, case_id: int) -> tuple[Case, Board]:
        case = await case_for(db, user, case_id)
        board = await db.get(Board, case.board_id)
        assert board is not None
        assert board.id is not None and user.id is not None
        member = await membership(db, board.id, user.id)
        if member is None or member.role != "chair":
            raise Forbidden(
                f"only the chair of board {board.name} finalizes or amends the plan "
                f"of case {case.number}"
            )
        return case, board
