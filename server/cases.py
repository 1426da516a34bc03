"""Cases: intake, the workflow states (after IHE XTB-WD), readiness, and what each reader sees."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select

from .access import board_has_external_members
from .audit import AuditLog
from .db import AsyncSession
from .errors import Conflict, FieldError, Forbidden, Invalid, TooLarge
from .imaging.uid import uid_problem
from .models import (
    Attachment,
    Board,
    BoardMember,
    Case,
    ImagingStudy,
    Institution,
    Opinion,
    Patient,
    User,
    utcnow,
)
from .security import Role
from .services import Services

__all__ = [
    "STATES",
    "TRANSITIONS",
    "SEXES",
    "PatientIn",
    "CaseIn",
    "Readiness",
    "create_case",
    "update_case",
    "transition",
    "readiness",
    "add_attachment",
    "add_study",
    "set_opinion",
    "allowed_transitions",
    "board_has_external_members",
]

STATES = (
    "requested",
    "accepted",
    "rejected",
    "in_preparation",
    "ready",
    "discussed",
    "finalized",
    "closed",
)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "requested": ("accepted", "rejected"),
    "accepted": ("in_preparation", "rejected"),
    "rejected": (),
    "in_preparation": ("ready",),
    "ready": ("in_preparation", "discussed"),
    "discussed": ("finalized", "ready"),
    "finalized": ("closed",),
    "closed": (),
}
_WHO_MAY: dict[str, frozenset[Role]] = {
    "accepted": frozenset({Role.ADMIN, Role.COORDINATOR}),
    "rejected": frozenset({Role.ADMIN, Role.COORDINATOR}),
    "in_preparation": frozenset({Role.ADMIN, Role.COORDINATOR}),
    "ready": frozenset({Role.ADMIN, Role.COORDINATOR}),
    "discussed": frozenset({Role.ADMIN, Role.COORDINATOR, Role.CHAIR}),
    "closed": frozenset({Role.ADMIN, Role.COORDINATOR}),
    # "finalized" is reached only by finalizing the case's consensus note.
    "finalized": frozenset(),
}
SEXES = ("female", "male", "other", "unknown")
LANGUAGES = ("en", "zh-CN")
ATTACHMENT_TYPES = {"application/pdf": b"%PDF-", "text/plain": b""}


@dataclass(frozen=True)
class PatientIn:
    name: str
    mrn: str
    birth_date: date
    sex: str


@dataclass(frozen=True)
class CaseIn:
    board_id: int
    clinical_question: str
    clinical_summary: str
    summary_language: str
    patient: PatientIn | None = None
    patient_id: int | None = None
    summary_translation: str | None = None
    translation_language: str | None = None
    translator: str | None = None
    consent_external: bool | None = None
    consent_date: date | None = None


def _check_text(case_in: CaseIn) -> None:
    if not case_in.clinical_question.strip():
        raise Invalid.on("clinical_question", "must not be empty")
    if case_in.summary_language not in LANGUAGES:
        raise Invalid.on("summary_language", f"use one of {', '.join(LANGUAGES)}")
    if case_in.summary_translation and case_in.translation_language not in LANGUAGES:
        raise Invalid.on("translation_language", f"use one of {', '.join(LANGUAGES)}")
    if case_in.summary_translation and not (case_in.translator or "").strip():
        raise Invalid.on("translator", "a translation names its translator")
    if case_in.consent_external and case_in.consent_date is None:
        raise Invalid.on("consent_date", "consent for external review needs its date")


async def _patient(
    session: AsyncSession, services: Services, case_in: CaseIn, institution_id: int
) -> Patient:
    cipher = services.cipher
    if case_in.patient_id is not None:
        found = await session.get(Patient, case_in.patient_id)
        if found is None or found.institution_id != institution_id:
            raise Invalid.on("patient_id", f"no patient {case_in.patient_id} at this institution")
        return found
    if case_in.patient is None:
        raise Invalid.on("patient", "give the patient, or the patient_id of a known patient")
    p = case_in.patient
    if not p.name.strip():
        raise Invalid.on("patient.name", "must not be empty")
    if not p.mrn.strip():
        raise Invalid.on("patient.mrn", "must not be empty")
    if p.sex not in SEXES:
        raise Invalid.on("patient.sex", f"use one of {', '.join(SEXES)}")
    if p.birth_date > date.today():
        raise Invalid.on("patient.birth_date", "is in the future")
    mrn_hash = cipher.lookup_hash(f"mrn:{institution_id}", p.mrn)
    taken = (
        await session.exec(
            select(Patient).where(
                Patient.institution_id == institution_id, Patient.mrn_hash == mrn_hash
            )
        )
    ).first()
    if taken:
        raise Conflict(
            f"patient.mrn: this MRN is already registered at the institution (patient_id "
            f"{taken.id}); create the case with that patient_id",
            [FieldError("patient.mrn", "duplicate MRN in this institution")],
        )
    patient = Patient(
        institution_id=institution_id,
        mrn_hash=mrn_hash,
        mrn_enc=cipher.seal("patient.mrn", p.mrn.strip()),
        name_enc=cipher.seal("patient.name", p.name.strip()),
        birth_date_enc=cipher.seal("patient.birth_date", p.birth_date.isoformat()),
        sex_enc=cipher.seal("patient.sex", p.sex),
        created_at=utcnow(),
    )
    session.add(patient)
    await session.flush()
    return patient


async def _next_number(session: AsyncSession, institution: Institution) -> str:
    prefix = f"{institution.code}-{datetime.now(UTC).year}-"
    count = (
        await session.exec(
            select(func.count()).select_from(Case).where(col(Case.number).startswith(prefix))
        )
    ).one()
    return f"{prefix}{count + 1:04d}"


async def create_case(
    session: AsyncSession, services: Services, user: User, case_in: CaseIn
) -> Case:
    board = await session.get(Board, case_in.board_id)
    if board is None:
        raise Invalid.on("board_id", f"no board {case_in.board_id}")
    _check_text(case_in)
    # A case belongs to the board's home institution: that is where the patient is treated.
    institution = await session.get(Institution, board.home_institution_id)
    assert institution is not None and institution.id is not None
    if user.institution_id != institution.id:
        raise Forbidden("only staff of the board's home institution can bring a case to it")
    patient = await _patient(session, services, case_in, institution.id)
    now = utcnow()
    cipher = services.cipher
    assert patient.id is not None and user.id is not None
    case = Case(
        number=await _next_number(session, institution),
        board_id=case_in.board_id,
        patient_id=patient.id,
        home_institution_id=institution.id,
        clinical_question=case_in.clinical_question.strip(),
        clinical_summary_enc=cipher.seal("case.summary", case_in.clinical_summary),
        summary_language=case_in.summary_language,
        summary_translation_enc=(
            cipher.seal("case.translation", case_in.summary_translation)
            if case_in.summary_translation
            else None
        ),
        translation_language=case_in.translation_language,
        translator=case_in.translator,
        summary_updated_at=now,
        consent_external=case_in.consent_external,
        consent_date=case_in.consent_date,
        created_by=user.id,
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    await session.flush()
    return case


async def update_case(
    session: AsyncSession, services: Services, case: Case, changes: dict[str, object]
) -> Case:
    if case.state in ("finalized", "closed", "rejected"):
        raise Conflict.on("state", f"case {case.number} is {case.state} and can no longer change")
    cipher = services.cipher
    now = utcnow()
    merged = CaseIn(
        board_id=case.board_id,
        clinical_question=str(changes.get("clinical_question", case.clinical_question)),
        clinical_summary="",
        summary_language=str(changes.get("summary_language", case.summary_language)),
        summary_translation=changes.get("summary_translation")  # type: ignore[arg-type]
        or (
            cipher.open("case.translation", case.summary_translation_enc)
            if case.summary_translation_enc
            else None
        ),
        translation_language=changes.get("translation_language", case.translation_language),  # type: ignore[arg-type]
        translator=changes.get("translator", case.translator),  # type: ignore[arg-type]
        consent_external=changes.get("consent_external", case.consent_external),  # type: ignore[arg-type]
        consent_date=changes.get("consent_date", case.consent_date),  # type: ignore[arg-type]
    )
    _check_text(merged)
    if "clinical_question" in changes:
        case.clinical_question = merged.clinical_question
    if "clinical_summary" in changes:
        case.clinical_summary_enc = cipher.seal("case.summary", str(changes["clinical_summary"]))
        case.summary_updated_at = now
    if "summary_translation" in changes:
        text = changes["summary_translation"]
        case.summary_translation_enc = cipher.seal("case.translation", str(text)) if text else None
    for name in (
        "summary_language",
        "translation_language",
        "translator",
        "consent_external",
        "consent_date",
    ):
        if name in changes:
            setattr(case, name, changes[name])
    case.updated_at = now
    session.add(case)
    await session.flush()
    return case


@dataclass(frozen=True)
class ReadinessItem:
    key: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    items: list[ReadinessItem]

    @property
    def ready(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def failing(self) -> list[ReadinessItem]:
        return [i for i in self.items if not i.ok]

    def as_json(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "items": [{"key": i.key, "ok": i.ok, "detail": i.detail} for i in self.items],
        }


async def readiness(session: AsyncSession, case: Case) -> Readiness:
    """The checklist a case must pass to become ready; every item says why it fails."""
    board = await session.get(Board, case.board_id)
    assert board is not None
    max_age = timedelta(days=board.readiness_max_age_days)
    now = utcnow()
    oldest = now - max_age
    items: list[ReadinessItem] = []

    items.append(
        ReadinessItem(
            "question",
            bool(case.clinical_question.strip()),
            "clinical question present"
            if case.clinical_question.strip()
            else "no clinical question",
        )
    )
    summary_fresh = case.summary_updated_at >= oldest
    items.append(
        ReadinessItem(
            "summary",
            bool(case.clinical_summary_enc) and summary_fresh,
            "clinical summary present"
            if summary_fresh
            else f"clinical summary older than {board.readiness_max_age_days} days",
        )
    )
    studies = list(await session.exec(select(ImagingStudy).where(ImagingStudy.case_id == case.id)))
    if not studies:
        items.append(ReadinessItem("imaging", False, "no imaging study attached"))
    else:
        newest = max(s.study_date for s in studies)
        fresh = newest >= oldest.date()
        items.append(
            ReadinessItem(
                "imaging",
                fresh,
                f"{len(studies)} imaging stud{'y' if len(studies) == 1 else 'ies'}, newest {newest}"
                if fresh
                else f"newest imaging study ({newest}) is older than "
                f"{board.readiness_max_age_days} days",
            )
        )
    reports = list(
        await session.exec(
            select(Attachment).where(Attachment.case_id == case.id, Attachment.kind == "pathology")
        )
    )
    if not reports:
        items.append(ReadinessItem("pathology", False, "no pathology report"))
    else:
        newest_at = max(r.uploaded_at for r in reports)
        fresh = newest_at >= oldest
        items.append(
            ReadinessItem(
                "pathology",
                fresh,
                "pathology report present"
                if fresh
                else f"pathology report older than {board.readiness_max_age_days} days",
            )
        )
    if await board_has_external_members(session, board):
        consented = case.consent_external is True and case.consent_date is not None
        items.append(
            ReadinessItem(
                "consent",
                consented,
                "patient consented to external review"
                if consented
                else "the board has external members: consent for external review is needed",
            )
        )
    return Readiness(items)


async def transition(
    session: AsyncSession, audit: AuditLog, case: Case, user: User, to: str, reason: str | None
) -> Case:
    """Move ``case`` to state ``to``, checking the workflow, the role and (for ready) the
    checklist; the move and its audit record are stored together."""
    if to not in STATES:
        raise Invalid.on("to", f"unknown state {to!r}; states are {', '.join(STATES)}")
    if to not in TRANSITIONS[case.state]:
        allowed = ", ".join(TRANSITIONS[case.state]) or "none"
        raise Conflict.on(
            "to", f"case {case.number} is {case.state}; it cannot become {to} (allowed: {allowed})"
        )
    if Role(user.role) not in _WHO_MAY[to]:
        if to == "finalized":
            raise Conflict.on("to", "a case is finalized by finalizing its consensus note")
        raise Forbidden(f"role {user.role} may not move a case to {to}")
    if to == "rejected":
        if not (reason or "").strip():
            raise Invalid.on("reason", "a rejection needs a reason")
        case.rejection_reason = (reason or "").strip()
    if to == "ready":
        check = await readiness(session, case)
        if not check.ready:
            raise Invalid(
                f"case {case.number} is not ready: " + "; ".join(i.detail for i in check.failing),
                [FieldError(i.key, i.detail) for i in check.failing],
            )
    before = case.state
    case.state = to
    case.updated_at = utcnow()
    session.add(case)
    await session.flush()
    await audit.append(
        session,
        actor_id=user.id,
        action="case.transition",
        target_type="case",
        target_id=case.id,
        detail={"from": before, "to": to},
    )
    return case


def allowed_transitions(case: Case, user: User) -> list[str]:
    return [t for t in TRANSITIONS[case.state] if Role(user.role) in _WHO_MAY[t]]


async def add_attachment(
    session: AsyncSession,
    services: Services,
    case: Case,
    user: User,
    *,
    filename: str,
    content_type: str,
    data: bytes,
) -> Attachment:
    limit = services.settings.max_upload_bytes
    if len(data) > limit:
        raise TooLarge.on("file", f"{len(data)} bytes is over the limit of {limit} bytes")
    base_type = content_type.split(";")[0].strip().lower()
    if base_type not in ATTACHMENT_TYPES:
        raise Invalid.on("file", f"content type {base_type or 'missing'!r} is not PDF or text")
    if not data:
        raise Invalid.on("file", "is empty")
    if base_type == "application/pdf" and not data.startswith(b"%PDF-"):
        raise Invalid.on("file", "is declared as PDF but is not a PDF")
    if base_type == "text/plain":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid.on("file", "text reports must be UTF-8") from exc
    if case.state in ("finalized", "closed", "rejected"):
        raise Conflict.on("state", f"case {case.number} is {case.state}")
    assert case.id is not None and user.id is not None
    attachment = Attachment(
        case_id=case.id,
        kind="pathology",
        filename_enc=services.cipher.seal("attachment.filename", filename or "report"),
        content_type=base_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=services.cipher.seal_bytes("attachment.data", data),
        uploaded_by=user.id,
        uploaded_at=utcnow(),
    )
    session.add(attachment)
    await session.flush()
    return attachment


async def add_study(
    session: AsyncSession,
    case: Case,
    user: User,
    *,
    uid: str,
    description: str,
    modality: str,
    study_date: date,
) -> ImagingStudy:
    problem = uid_problem(uid)
    if problem is not None:
        raise Invalid.on("study_instance_uid", f"{uid[:80]!r} is not a DICOM UID: it {problem}")
    if study_date > date.today():
        raise Invalid.on("study_date", "is in the future")
    assert case.id is not None and user.id is not None
    study = ImagingStudy(
        case_id=case.id,
        study_instance_uid=uid,
        description=description,
        modality=modality,
        study_date=study_date,
        added_by=user.id,
        added_at=utcnow(),
    )
    session.add(study)
    await session.flush()
    return study


async def set_opinion(
    session: AsyncSession, services: Services, case: Case, user: User, text: str
) -> Opinion:
    if case.board_id not in {
        m
        for m in await session.exec(
            select(BoardMember.board_id).where(BoardMember.user_id == user.id)
        )
    }:
        raise Forbidden(f"only members of the board may give an opinion on case {case.number}")
    if case.state not in ("accepted", "in_preparation", "ready"):
        raise Conflict.on("state", f"opinions are given before the session; case is {case.state}")
    if not text.strip():
        raise Invalid.on("text", "must not be empty")
    existing = (
        await session.exec(
            select(Opinion).where(Opinion.case_id == case.id, Opinion.user_id == user.id)
        )
    ).first()
    assert case.id is not None and user.id is not None
    opinion = existing or Opinion(
        case_id=case.id, user_id=user.id, text_enc="", updated_at=utcnow()
    )
    opinion.text_enc = services.cipher.seal("opinion.text", text.strip())
    opinion.updated_at = utcnow()
    session.add(opinion)
    await session.flush()
    return opinion
