"""REST: cases, their attachments, imaging references and preliminary opinions."""

from __future__ import annotations

from datetime import date

from aiohttp import web
from pydantic import BaseModel, Field
from sqlmodel import col, or_, select

from ..access import case_for, is_external, member_board_ids, sees_institution_boards
from ..cases import (
    STATES,
    CaseIn,
    PatientIn,
    add_attachment,
    add_study,
    allowed_transitions,
    create_case,
    readiness,
    set_opinion,
    transition,
    update_case,
)
from ..errors import Forbidden, Invalid, NotFound
from ..imaging.upload import read_part, shown
from ..models import Attachment, Case, ImagingStudy, Opinion, Patient, User
from .queries import CaseQuery
from .responses import AttachmentOut, CaseList, CaseOut, OpinionList, OpinionOut, StudyOut
from .roles import CASE_AUTHORS, EVERYONE, MOVERS, OPINION_GIVERS
from .routing import Call, RouteTable

routes = RouteTable()


class PatientBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    mrn: str = Field(min_length=1, max_length=64)
    birth_date: date
    sex: str


class CaseBody(BaseModel):
    board_id: int
    patient: PatientBody | None = None
    patient_id: int | None = None
    clinical_question: str = Field(min_length=1, max_length=2000)
    clinical_summary: str = Field(default="", max_length=20000)
    summary_language: str = "en"
    summary_translation: str | None = Field(default=None, max_length=20000)
    translation_language: str | None = None
    translator: str | None = Field(default=None, max_length=200)
    consent_external: bool | None = None
    consent_date: date | None = None


class CasePatch(BaseModel):
    clinical_question: str | None = Field(default=None, min_length=1, max_length=2000)
    clinical_summary: str | None = Field(default=None, max_length=20000)
    summary_language: str | None = None
    summary_translation: str | None = Field(default=None, max_length=20000)
    translation_language: str | None = None
    translator: str | None = Field(default=None, max_length=200)
    consent_external: bool | None = None
    consent_date: date | None = None


class TransitionIn(BaseModel):
    to: str
    reason: str | None = Field(default=None, max_length=2000)


class StudyIn(BaseModel):
    study_instance_uid: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=200)
    modality: str = Field(default="", max_length=16)
    study_date: date


class OpinionIn(BaseModel):
    text: str = Field(min_length=1, max_length=10000)


def _age(birth: date) -> int:
    today = date.today()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


async def _patient_json(call: Call, case: Case, external: bool) -> dict[str, object]:
    patient = await call.session.get(Patient, case.patient_id)
    assert patient is not None
    c = call.services.cipher
    birth = date.fromisoformat(c.open("patient.birth_date", patient.birth_date_enc))
    sex = c.open("patient.sex", patient.sex_enc)
    if external:
        # De-identified view (HIPAA Safe Harbor style): no name, MRN or dates; ages over 89 banded.
        age = _age(birth)
        return {"sex": sex, "age": age if age <= 89 else "90+"}
    return {
        "id": patient.id,
        "name": c.open("patient.name", patient.name_enc),
        "mrn": c.open("patient.mrn", patient.mrn_enc),
        "birth_date": birth.isoformat(),
        "sex": sex,
    }


async def case_json(call: Call, case: Case) -> dict[str, object]:
    external = is_external(call.me, case)
    c = call.services.cipher
    studies = list(
        await call.session.exec(
            select(ImagingStudy)
            .where(ImagingStudy.case_id == case.id, ImagingStudy.deidentified == external)
            .order_by(col(ImagingStudy.id))
        )
    )
    attachments = list(
        await call.session.exec(
            select(Attachment).where(Attachment.case_id == case.id).order_by(col(Attachment.id))
        )
    )
    check = await readiness(call.session, case)
    if not external:
        await call.audit(
            action="case.read_phi",
            target_type="case",
            target_id=case.id,
        )
    return {
        "id": case.id,
        "number": case.number,
        "board_id": case.board_id,
        "home_institution_id": case.home_institution_id,
        "state": case.state,
        "deidentified": external,
        "patient": await _patient_json(call, case, external),
        "clinical_question": case.clinical_question,
        "clinical_summary": c.open("case.summary", case.clinical_summary_enc),
        "summary_language": case.summary_language,
        "summary_translation": (
            c.open("case.translation", case.summary_translation_enc)
            if case.summary_translation_enc
            else None
        ),
        "translation_language": case.translation_language,
        "translator": case.translator,
        "consent_external": case.consent_external,
        "consent_date": case.consent_date.isoformat() if case.consent_date else None,
        "rejection_reason": case.rejection_reason,
        # External participants see that reports exist, not the files (they carry identifiers).
        "attachments": [
            {
                "id": a.id,
                "filename": None if external else c.open("attachment.filename", a.filename_enc),
                "content_type": a.content_type,
                "size": a.size,
                "uploaded_at": a.uploaded_at.isoformat(),
            }
            for a in attachments
        ],
        "studies": [
            {
                "id": s.id,
                "study_instance_uid": None if external else s.study_instance_uid,
                "description": s.description,
                "modality": s.modality,
                "study_date": None if external else s.study_date.isoformat(),
            }
            for s in studies
        ],
        "readiness": check.as_json(),
        "allowed_transitions": [] if external else allowed_transitions(case, call.me),
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
    }


def _require_home(call: Call, case: Case) -> None:
    if is_external(call.me, case):
        raise Forbidden(f"only staff of case {case.number}'s home institution may change it")


class LookupIn(BaseModel):
    mrn: str = Field(min_length=1, max_length=64)


async def _case_list(call: Call, *, mrn: str | None) -> list[dict[str, object]]:
    me = call.me
    q = call.request.query
    query = select(Case, Patient).where(Case.patient_id == Patient.id)
    if sees_institution_boards(me):
        query = query.where(Case.home_institution_id == me.institution_id)
    else:
        ids = await member_board_ids(call.session, me)
        # Cases of another institution are listed only with consent to external review.
        query = query.where(
            col(Case.board_id).in_(ids),
            or_(
                col(Case.home_institution_id) == me.institution_id,
                col(Case.consent_external).is_(True),
            ),
        )
    board_id = call.int_query("board_id")
    if board_id is not None:
        query = query.where(Case.board_id == board_id)
    if "state" in q:
        if q["state"] not in STATES:
            raise Invalid.on("state", f"unknown state {q['state']!r}")
        query = query.where(Case.state == q["state"])
    if mrn is not None:
        query = query.where(
            Patient.mrn_hash == call.services.cipher.lookup_hash(f"mrn:{me.institution_id}", mrn),
            Case.home_institution_id == me.institution_id,
        )
    rows = list(await call.session.exec(query.order_by(col(Case.id))))
    items: list[dict[str, object]] = []
    for case, patient in rows:
        external = is_external(me, case)
        items.append(
            {
                "id": case.id,
                "number": case.number,
                "state": case.state,
                "board_id": case.board_id,
                "clinical_question": case.clinical_question,
                "patient_name": None
                if external
                else call.services.cipher.open("patient.name", patient.name_enc),
                "ready": (await readiness(call.session, case)).ready,
            }
        )
    return items


@routes.add(
    "GET",
    "/api/cases",
    roles=EVERYONE,
    summary="List cases",
    tag="cases",
    response=CaseList,
    query=CaseQuery,
)
async def list_cases(call: Call) -> dict[str, object]:
    return {"items": await _case_list(call, mrn=None)}


# The MRN travels in a POST body, never in a URL, where proxies and browsers would keep it.
@routes.add(
    "POST",
    "/api/cases/lookup",
    roles=EVERYONE,
    summary="Find cases by MRN",
    body=LookupIn,
    tag="cases",
    writes=True,
    query=CaseQuery,
    response=CaseList,
)
async def lookup_cases(call: Call) -> dict[str, object]:
    found = await _case_list(call, mrn=call.body.mrn)
    await call.audit(
        action="case.lookup_mrn",
        target_type="patient",
        target_id="-",
        detail={"found": len(found)},
    )
    return {"items": found}


@routes.add(
    "POST",
    "/api/cases",
    roles=CASE_AUTHORS,
    summary="Request a case",
    body=CaseBody,
    status=201,
    tag="cases",
    response=CaseOut,
    answers=(404, 409),
)
async def post_case(call: Call) -> dict[str, object]:
    b: CaseBody = call.body
    data = b.model_dump(exclude={"patient"})
    patient = PatientIn(**b.patient.model_dump()) if b.patient else None
    case = await create_case(call.session, call.services, call.me, CaseIn(patient=patient, **data))
    await call.audit(
        action="case.create",
        target_type="case",
        target_id=case.id,
        detail={"number": case.number, "state": case.state},
    )
    return await case_json(call, case)


@routes.add(
    "GET",
    "/api/cases/{case_id}",
    roles=EVERYONE,
    summary="Show a case",
    tag="cases",
    writes=True,
    response=CaseOut,
)
async def get_case(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    return await case_json(call, case)


@routes.add(
    "PATCH",
    "/api/cases/{case_id}",
    roles=CASE_AUTHORS,
    summary="Change a case",
    body=CasePatch,
    tag="cases",
    response=CaseOut,
    answers=(409,),
)
async def patch_case(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    _require_home(call, case)
    changes = call.body.model_dump(exclude_unset=True)
    await update_case(call.session, call.services, case, changes)
    await call.audit(
        action="case.update",
        target_type="case",
        target_id=case.id,
        detail={"fields": sorted(changes)},
    )
    return await case_json(call, case)


@routes.add(
    "POST",
    "/api/cases/{case_id}/transitions",
    roles=MOVERS,
    summary="Move a case to another state",
    body=TransitionIn,
    tag="cases",
    response=CaseOut,
    answers=(409,),
)
async def post_transition(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    _require_home(call, case)
    await transition(
        call.session, call.services.audit, case, call.me, call.body.to, call.body.reason
    )
    return await case_json(call, case)


@routes.add(
    "POST",
    "/api/cases/{case_id}/attachments",
    roles=CASE_AUTHORS,
    summary="Attach a pathology report",
    status=201,
    tag="cases",
    raw_body="multipart/form-data",
    writes=False,
    response=AttachmentOut,
    answers=(409, 413),
)
async def post_attachment(call: Call) -> dict[str, object]:
    # The body (bounded) is read before the write unit is taken: a slow sender never holds it.
    case_id = call.int_param("case_id")
    case = await case_for(call.session, call.me, case_id)
    _require_home(call, case)
    services = call.services
    if not call.request.content_type.startswith("multipart/"):
        raise Invalid.on("file", "send the report as multipart/form-data in a part named file")
    assert call.me.id is not None
    await call.session.close()  # no database connection held while the body arrives
    async with services.spools.slot(call.me.id):
        part, data = await read_part(call.request, services.settings.max_upload_bytes, "file")
    filename = shown(part.filename or "report")
    async with services.db.write() as session:
        case = await case_for(session, call.me, case_id)
        attachment = await add_attachment(
            session,
            services,
            case,
            call.me,
            filename=filename,
            content_type=part.headers.get("Content-Type", ""),
            data=data,
        )
        await services.audit.append(
            session,
            actor_id=call.me.id,
            action="case.attach",
            target_type="case",
            target_id=case.id,
            detail={"attachment_id": attachment.id, "size": attachment.size},
        )
    return {
        "id": attachment.id,
        "filename": filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "uploaded_at": attachment.uploaded_at.isoformat(),
    }


@routes.add(
    "GET",
    "/api/cases/{case_id}/attachments/{attachment_id}",
    roles=EVERYONE,
    summary="Download an attachment",
    tag="cases",
    writes=True,
    media_types=("application/pdf", "text/plain"),
)
async def get_attachment(call: Call) -> web.Response:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    _require_home(call, case)
    attachment = await call.session.get(Attachment, call.int_param("attachment_id"))
    if attachment is None or attachment.case_id != case.id:
        raise NotFound(f"no attachment {call.int_param('attachment_id')} on case {case.number}")
    c = call.services.cipher
    await call.audit(
        action="case.read_attachment",
        target_type="case",
        target_id=case.id,
        detail={"attachment_id": attachment.id},
    )
    return web.Response(
        body=c.open_bytes("attachment.data", attachment.data),
        content_type=attachment.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="report-{attachment.id}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@routes.add(
    "POST",
    "/api/cases/{case_id}/studies",
    roles=CASE_AUTHORS,
    summary="Attach an imaging study reference",
    body=StudyIn,
    status=201,
    tag="cases",
    response=StudyOut,
    answers=(409,),
)
async def post_study(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    _require_home(call, case)
    b: StudyIn = call.body
    study = await add_study(
        call.session,
        case,
        call.me,
        uid=b.study_instance_uid,
        description=b.description,
        modality=b.modality,
        study_date=b.study_date,
    )
    await call.audit(
        action="case.add_study",
        target_type="case",
        target_id=case.id,
    )
    return {
        "id": study.id,
        "study_instance_uid": study.study_instance_uid,
        "description": study.description,
        "modality": study.modality,
        "study_date": study.study_date.isoformat(),
    }


@routes.add(
    "GET",
    "/api/cases/{case_id}/opinions",
    roles=EVERYONE,
    summary="List preliminary opinions",
    tag="cases",
    response=OpinionList,
)
async def list_opinions(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    rows = await call.session.exec(
        select(Opinion, User)
        .where(Opinion.case_id == case.id, Opinion.user_id == User.id)
        .order_by(col(Opinion.id))
    )
    c = call.services.cipher
    return {
        "items": [
            {
                "user_id": u.id,
                "display_name": u.display_name,
                "specialty": u.specialty,
                "text": c.open("opinion.text", o.text_enc),
                "updated_at": o.updated_at.isoformat(),
            }
            for o, u in rows
        ]
    }


@routes.add(
    "PUT",
    "/api/cases/{case_id}/opinions/mine",
    roles=OPINION_GIVERS,
    summary="Give my preliminary opinion",
    body=OpinionIn,
    tag="cases",
    response=OpinionOut,
    answers=(409,),
)
async def put_opinion(call: Call) -> dict[str, object]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    opinion = await set_opinion(call.session, call.services, case, call.me, call.body.text)
    await call.audit(
        action="case.opinion",
        target_type="case",
        target_id=case.id,
    )
    return {
        "user_id": call.me.id,
        "display_name": call.me.display_name,
        "specialty": call.me.specialty,
        "text": call.body.text.strip(),
        "updated_at": opinion.updated_at.isoformat(),
    }
