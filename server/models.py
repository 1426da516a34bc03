"""Tables. Only columns and constraints live here; behaviour lives in the domain modules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, LargeBinary, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "UTCDateTime",
    "utcnow",
    "Institution",
    "User",
    "Board",
    "BoardMember",
    "BoardSession",
    "Patient",
    "Case",
    "Attachment",
    "ImagingStudy",
    "Opinion",
    "AgendaItem",
    "Invitation",
    "AuditRecord",
    "Attendance",
    "DicomSeries",
    "DicomInstance",
    "Note",
    "NoteUpdate",
    "AgreedPlan",
    "PlanFollowup",
    "RevokedToken",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores instants as UTC and always hands back timezone-aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an instant is stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _instant(**kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), **kw))


class Institution(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=16)
    name: str = Field(max_length=200)
    timezone: str = Field(max_length=64)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=64)
    display_name: str = Field(max_length=200)
    email: str = Field(default="", max_length=200)
    password_hash: str
    role: str = Field(max_length=16)
    specialty: str | None = Field(default=None, max_length=32)
    institution_id: int = Field(foreign_key="institution.id")
    timezone: str = Field(max_length=64)
    locale: str = Field(default="en", max_length=8)
    active: bool = True
    created_at: datetime = _instant(nullable=False)
    # Access tokens carry the generation they were issued in; bumping it (disabled, new role or
    # password) makes every earlier token of the user invalid.
    token_generation: int = 0


class RevokedToken(SQLModel, table=True):
    """An access token given up before it expires (logged out); kept until it would expire."""

    __tablename__ = "revoked_token"

    jti: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id")
    expires_at: datetime = _instant(nullable=False, index=True)


class Board(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    tumor_site: str = Field(max_length=32)
    home_institution_id: int = Field(foreign_key="institution.id")
    timezone: str = Field(max_length=64)
    rrule: str = Field(max_length=500)
    start_time: str = Field(max_length=5)
    start_date: date
    duration_minutes: int
    required_specialties: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    readiness_max_age_days: int = 90
    # The consensus-note template the board writes its notes in; None: the one serving its
    # tumor site (see notes.templates.TemplateSet.for_site).
    note_template: str | None = Field(default=None, max_length=32)
    created_at: datetime = _instant(nullable=False)


class BoardMember(SQLModel, table=True):
    __tablename__ = "board_member"
    __table_args__ = (UniqueConstraint("board_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    role: str = Field(max_length=16)


class BoardSession(SQLModel, table=True):
    """One meeting of a board ("session" in the vocabulary)."""

    __tablename__ = "board_session"
    id: int | None = Field(default=None, primary_key=True)
    board_id: int = Field(foreign_key="board.id", index=True)
    start_at: datetime = _instant(nullable=False, index=True)
    end_at: datetime = _instant(nullable=False)
    status: str = Field(default="scheduled", max_length=16)
    origin: str = Field(default="recurrence", max_length=16)


class Patient(SQLModel, table=True):
    """A patient of one institution; every identifier is sealed (FieldCipher)."""

    __table_args__ = (UniqueConstraint("institution_id", "mrn_hash"),)
    id: int | None = Field(default=None, primary_key=True)
    institution_id: int = Field(foreign_key="institution.id")
    mrn_hash: str = Field(max_length=64, index=True)
    mrn_enc: str
    name_enc: str
    birth_date_enc: str
    sex_enc: str
    created_at: datetime = _instant(nullable=False)


class Case(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=32)
    board_id: int = Field(foreign_key="board.id", index=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    home_institution_id: int = Field(foreign_key="institution.id")
    state: str = Field(default="requested", max_length=16, index=True)
    clinical_question: str = Field(max_length=2000)
    clinical_summary_enc: str
    summary_language: str = Field(max_length=8)
    summary_translation_enc: str | None = None
    translation_language: str | None = Field(default=None, max_length=8)
    translator: str | None = Field(default=None, max_length=200)
    summary_updated_at: datetime = _instant(nullable=False)
    consent_external: bool | None = None
    consent_date: date | None = None
    rejection_reason: str | None = Field(default=None, max_length=2000)
    created_by: int = Field(foreign_key="user.id")
    created_at: datetime = _instant(nullable=False)
    updated_at: datetime = _instant(nullable=False)


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    kind: str = Field(default="pathology", max_length=16)
    filename_enc: str
    content_type: str = Field(max_length=64)
    size: int
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    uploaded_by: int = Field(foreign_key="user.id")
    uploaded_at: datetime = _instant(nullable=False)


class ImagingStudy(SQLModel, table=True):
    __tablename__ = "imaging_study"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    study_instance_uid: str = Field(max_length=64)
    description: str = Field(default="", max_length=200)
    modality: str = Field(default="", max_length=16)
    study_date: date
    added_by: int = Field(foreign_key="user.id")
    added_at: datetime = _instant(nullable=False)
    # The de-identified copy made for external participants (mapped UIDs, pseudonym).
    deidentified: bool = False


class Opinion(SQLModel, table=True):
    """A member's preliminary opinion on a case, one per member."""

    __table_args__ = (UniqueConstraint("case_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    user_id: int = Field(foreign_key="user.id")
    text_enc: str
    updated_at: datetime = _instant(nullable=False)


class AgendaItem(SQLModel, table=True):
    __tablename__ = "agenda_item"
    __table_args__ = (UniqueConstraint("session_id", "case_id"),)
    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="board_session.id", index=True)
    case_id: int = Field(foreign_key="case.id")
    position: int
    timebox_minutes: int
    lane: str = Field(default="discussion", max_length=24)


class Invitation(SQLModel, table=True):
    """A single-use, single-board invitation; the link carries a signed token naming its id."""

    id: str = Field(primary_key=True, max_length=64)
    board_id: int = Field(foreign_key="board.id")
    institution_id: int = Field(foreign_key="institution.id")
    specialty: str = Field(max_length=32)
    email: str = Field(default="", max_length=200)
    created_by: int = Field(foreign_key="user.id")
    expires_at: datetime = _instant(nullable=False)
    accepted_by: int | None = Field(default=None, foreign_key="user.id")
    accepted_at: datetime | None = _instant(nullable=True)


class AuditRecord(SQLModel, table=True):
    """One append-only audit entry; ``hash`` covers the entry and ``prev_hash``."""

    __tablename__ = "audit_record"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _instant(nullable=False)
    actor_id: int | None = None
    action: str = Field(max_length=64)
    target_type: str = Field(max_length=32)
    target_id: str = Field(max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class Attendance(SQLModel, table=True):
    """A span of a participant's media presence in a session, per agenda item (from real media
    joins and leaves, not typed)."""

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="board_session.id", index=True)
    user_id: int = Field(foreign_key="user.id")
    agenda_item_id: int | None = Field(default=None, foreign_key="agenda_item.id")
    specialty: str | None = Field(default=None, max_length=32)
    institution_id: int = Field(foreign_key="institution.id")
    joined_at: datetime = _instant(nullable=False)
    left_at: datetime | None = _instant(nullable=True)


class DicomSeries(SQLModel, table=True):
    """A stored series of an imaging study; ``alias`` is the opaque id used on the wire."""

    __tablename__ = "dicom_series"
    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="imaging_study.id", index=True)
    series_uid: str = Field(max_length=64, index=True)
    alias: str = Field(max_length=32, unique=True)
    modality: str = Field(default="", max_length=16)
    description: str = Field(default="", max_length=200)
    number: int | None = None
    burned_in: bool = False
    # A de-identified copy points at the series it was made from.
    source_id: int | None = Field(default=None, foreign_key="dicom_series.id")
    created_at: datetime = _instant(nullable=False)
    # A coordinator's word that a burned-in series shows nothing identifying: from then on
    # external participants get its de-identified copy too.
    cleared_at: datetime | None = _instant(nullable=True)
    cleared_by: int | None = Field(default=None, foreign_key="user.id")
    clearance_reason: str | None = Field(default=None, max_length=500)


class DicomInstance(SQLModel, table=True):
    """A stored instance: where its file is, how to find each frame in it without parsing, and
    its DICOM JSON metadata (pixel data left out), both sealed (``imaging.sealed``)."""

    __tablename__ = "dicom_instance"
    id: int | None = Field(default=None, primary_key=True)
    series_id: int = Field(foreign_key="dicom_series.id", index=True)
    sop_uid: str = Field(max_length=64, unique=True)
    sop_class_uid: str = Field(max_length=64)
    instance_number: int | None = None
    path: str = Field(max_length=500)
    transfer_syntax: str = Field(max_length=64)
    rows: int = 0
    columns: int = 0
    frames: int = 1
    # Per frame, the (offset, length) runs in the file that make it up: one run, its sealed
    # chunk, in a sealed file.
    frame_index: list[list[list[int]]] = Field(default_factory=list, sa_column=Column(JSON))
    # The key id the file is sealed with; None: stored plain, before sealing (revision 0007).
    file_key: str | None = Field(default=None, max_length=32)
    # The DICOM JSON, sealed to the instance; dicom_json holds it only for instances stored
    # plain, before sealing.
    dicom_enc: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    dicom_json: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))


class Note(SQLModel, table=True):
    """A case's consensus note: its template and where it stands (draft, finalized, or an
    amendment open). The content is the CRDT document made of its ``NoteUpdate`` rows."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", unique=True)
    template: str = Field(max_length=32)
    status: str = Field(default="draft", max_length=16)
    amendment_reason_enc: str | None = None
    created_at: datetime = _instant(nullable=False)
    updated_at: datetime = _instant(nullable=False)


class NoteUpdate(SQLModel, table=True):
    """One CRDT update of a note, sealed (FieldCipher), stored before it is acknowledged."""

    __tablename__ = "note_update"
    id: int | None = Field(default=None, primary_key=True)
    note_id: int = Field(foreign_key="note.id", index=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    author_id: int | None = Field(default=None, foreign_key="user.id")
    at: datetime = _instant(nullable=False)


class AgreedPlan(SQLModel, table=True):
    """One signed version of a case's agreed plan; version 2 onwards are amendments."""

    __tablename__ = "agreed_plan"
    __table_args__ = (UniqueConstraint("case_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    version: int
    hash: str = Field(max_length=80)
    previous_hash: str | None = Field(default=None, max_length=80)
    kid: str = Field(max_length=32)
    # The signed version (payload, hash, signature) as canonical JSON, sealed.
    document_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    session_id: int | None = Field(default=None, foreign_key="board_session.id")
    signed_by: int = Field(foreign_key="user.id")
    signed_at: datetime = _instant(nullable=False)


class PlanFollowup(SQLModel, table=True):
    """What became of one recommendation of the agreed plan (by its rank)."""

    __tablename__ = "plan_followup"
    __table_args__ = (UniqueConstraint("case_id", "rank"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    rank: int
    kind: str = Field(max_length=32)
    status: str = Field(default="planned", max_length=16)
    reason: str | None = Field(default=None, max_length=32)
    comment_enc: str | None = None
    updated_by: int | None = Field(default=None, foreign_key="user.id")
    updated_at: datetime = _instant(nullable=False)
