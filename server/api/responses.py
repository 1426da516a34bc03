"""The shapes of the REST API's JSON answers, declared on the routes for the OpenAPI document.

Handlers build their answers as dicts; these models only describe them (the fuzz tests check
every answer against them), so a field listed here is one every answer carries, and a nested
value the domain shapes freely (a note's content, a signed payload) is an open object.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, RootModel

__all__ = [
    "AgendaItemOut",
    "AgendaOut",
    "AttachmentOut",
    "AuditVerifyOut",
    "BoardList",
    "BoardOut",
    "BulkJobOut",
    "CaseList",
    "CaseOut",
    "ClearanceOut",
    "DicomJson",
    "DicomJsonList",
    "FinalizeOut",
    "HealthOut",
    "ImportedStudyOut",
    "InstitutionList",
    "InstitutionOut",
    "InvitationOut",
    "InvitationShown",
    "Jwks",
    "LoginOut",
    "MemberAdded",
    "NoteOut",
    "OpenObject",
    "OpinionList",
    "OpinionOut",
    "PlanOut",
    "RecordMetricsOut",
    "RecordSearchOut",
    "SeriesList",
    "SessionList",
    "SessionOut",
    "StatusOut",
    "StudyOut",
    "TemplateList",
    "UploadOut",
    "UserList",
    "UserOut",
]


class OpenObject(RootModel[dict[str, Any]]):
    """A JSON object whose members the domain shapes (a template, the OpenAPI document)."""


class DicomJson(RootModel[dict[str, Any]]):
    """One DICOM JSON dataset (PS3.18 F.2): attributes by tag, each with its VR."""


class DicomJsonList(RootModel[list[dict[str, Any]]]):
    """DICOM JSON datasets (PS3.18 F.2), as QIDO-RS and WADO-RS metadata answer."""


# -- system ---------------------------------------------------------------------------------


class HealthOut(BaseModel):
    status: str
    database: str


class AuditBreak(BaseModel):
    record_id: int
    reason: str


class AuditVerifyOut(BaseModel):
    records: int
    intact: bool
    breaks: list[AuditBreak]


class Jwks(BaseModel):
    keys: list[dict[str, str]]


# -- people ---------------------------------------------------------------------------------


class InstitutionOut(BaseModel):
    id: int
    code: str
    name: str
    timezone: str


class InstitutionList(BaseModel):
    items: list[InstitutionOut]


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    email: str
    role: str
    specialty: str | None
    institution: InstitutionOut
    timezone: str | None
    locale: str | None
    active: bool


class UserList(BaseModel):
    items: list[UserOut]


class LoginOut(BaseModel):
    token: str
    expires_at: str
    user: UserOut


# -- boards and sessions --------------------------------------------------------------------


class TimeTriple(BaseModel):
    """One instant in UTC, in the board's zone and in the viewer's."""

    utc: str
    board: str
    board_tz: str
    viewer: str
    viewer_tz: str


class SessionOut(BaseModel):
    id: int
    board_id: int
    board_name: str
    start: TimeTriple
    end: TimeTriple
    status: str
    origin: str
    agenda_count: int


class IceServerOut(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServersOut(BaseModel):
    ice_servers: list[IceServerOut]


class SessionList(BaseModel):
    items: list[SessionOut]


class BoardMember(BaseModel):
    user_id: int
    username: str
    display_name: str
    role: str
    specialty: str | None
    institution_id: int


class BoardOut(BaseModel):
    id: int
    name: str
    tumor_site: str
    home_institution_id: int
    timezone: str
    rrule: str
    start_time: str
    start_date: str
    duration_minutes: int
    required_specialties: list[str]
    readiness_max_age_days: int
    note_template: str | None
    members: list[BoardMember]
    next_session: SessionOut | None


class BoardList(BaseModel):
    items: list[BoardOut]


class CopiesMade(BaseModel):
    instances: int
    failed_studies: list[int]


class MemberAdded(BaseModel):
    board_id: int
    user_id: int
    role: str
    copies: CopiesMade


class InvitationOut(BaseModel):
    token: str
    url: str
    expires_at: str


class InvitationShown(BaseModel):
    board_id: int
    board_name: str
    specialty: str
    institution_name: str
    expires_at: str


class AgendaItemOut(BaseModel):
    id: int
    session_id: int
    case_id: int
    case_number: str
    clinical_question: str
    position: int
    timebox_minutes: int
    lane: str
    planned_start: TimeTriple | None


class AgendaOut(BaseModel):
    items: list[AgendaItemOut]
    total_minutes: int
    session_minutes: int


# -- cases ----------------------------------------------------------------------------------


class AttachmentOut(BaseModel):
    id: int
    filename: str | None
    content_type: str
    size: int
    uploaded_at: str


class StudyOut(BaseModel):
    id: int
    study_instance_uid: str | None
    description: str
    modality: str
    study_date: str | None


class ReadinessItem(BaseModel):
    key: str
    ok: bool
    detail: str


class ReadinessOut(BaseModel):
    ready: bool
    items: list[ReadinessItem]


class CaseOut(BaseModel):
    id: int
    number: str
    board_id: int
    home_institution_id: int
    state: str
    deidentified: bool
    # Home staff see id, name, MRN, birth date and sex; external participants sex and age.
    patient: dict[str, Any]
    clinical_question: str
    clinical_summary: str
    summary_language: str
    summary_translation: str | None
    translation_language: str | None
    translator: str | None
    consent_external: bool | None
    consent_date: str | None
    rejection_reason: str | None
    attachments: list[AttachmentOut]
    studies: list[StudyOut]
    readiness: ReadinessOut
    allowed_transitions: list[str]
    created_at: str
    updated_at: str


class CaseListItem(BaseModel):
    id: int
    number: str
    state: str
    board_id: int
    clinical_question: str
    patient_name: str | None
    ready: bool


class CaseList(BaseModel):
    items: list[CaseListItem]


class OpinionOut(BaseModel):
    user_id: int
    display_name: str
    specialty: str | None
    text: str
    updated_at: str


class OpinionList(BaseModel):
    items: list[OpinionOut]


# -- imaging --------------------------------------------------------------------------------


class UploadedSeries(BaseModel):
    alias: str
    description: str


class UploadOut(BaseModel):
    series: list[UploadedSeries]
    files: int


class StoredSeries(BaseModel):
    alias: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    description: str
    number: int | None
    instances: int
    burned_in: bool


class ListedSeries(StoredSeries):
    withheld: bool
    cleared_at: str | None
    cleared_by: int | None
    clearance_reason: str | None


class SeriesList(BaseModel):
    series: list[ListedSeries]


class ClearanceOut(BaseModel):
    alias: str
    burned_in: bool
    withheld: bool
    cleared_at: str
    cleared_by: int | None
    clearance_reason: str | None
    copied_instances: int


class ImportedStudyOut(BaseModel):
    id: int
    study_instance_uid: str
    description: str
    modality: str
    study_date: str
    retrieved: int
    series: list[StoredSeries]


# -- notes and plans ------------------------------------------------------------------------


class TemplateSummary(BaseModel):
    id: str
    label: dict[str, str]
    tumor_sites: list[str]


class TemplateList(BaseModel):
    items: list[TemplateSummary]


class NoteOut(BaseModel):
    case_id: int
    template: str
    status: str
    readonly: bool
    can_edit: bool
    can_finalize: bool
    can_amend: bool
    content: dict[str, Any]
    attendance: list[dict[str, Any]]
    quorum: dict[str, list[str]]
    session: dict[str, Any] | None
    amendment_reason: str | None


class FinalizeOut(BaseModel):
    version: int
    hash: str
    kid: str


class StatusOut(BaseModel):
    status: str


class PlanVersion(BaseModel):
    version: int
    hash: str
    previous_hash: str | None
    amendment_reason: str | None
    finalized_at: str
    finalized_by: Any
    kid: str


class PlanOut(BaseModel):
    versions: list[PlanVersion]
    current: dict[str, Any]
    followup: list[dict[str, Any]]
    state: str
    verified: bool
    problems: list[str]


# -- records --------------------------------------------------------------------------------


class RecordSearchOut(BaseModel):
    items: list[dict[str, Any]]
    total: int


class BulkJobOut(BaseModel):
    id: str
    state: str
    format: str
    media_type: str
    language: str
    audience: str
    from_: str = Field(alias="from")
    to: str
    zone: str
    board_id: int | None
    created_at: str
    done: int
    total: int
    failed: list[dict[str, str]]
    error: str | None


class RecordMetricsOut(BaseModel):
    from_: str | None = Field(alias="from")
    to: str | None
    boards: list[dict[str, Any]]
