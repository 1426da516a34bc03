"""plan_record: gather a case's latest signed plan and its context into a PlanRecord."""

from __future__ import annotations

from datetime import date

from ..db import AsyncSession
from ..errors import Conflict
from ..models import Case, Institution, Patient
from ..services import Services
from .record import PatientInfo, PlanRecord

__all__ = ["plan_record"]


async def plan_record(
    db: AsyncSession, services: Services, case: Case, *, external: bool
) -> PlanRecord:
    """The latest signed version of ``case``'s plan with what exporters need. ``external``:
    for an audience outside the home institution, so no patient identifiers."""
    assert case.id is not None
    versions = await services.plans.versions(db, case.id)
    if not versions:
        raise Conflict.on(
            "case", f"case {case.number} has no finalized note to export (it is {case.state})"
        )
    cipher = services.cipher
    patient = None
    if not external:
        row = await db.get(Patient, case.patient_id)
        assert row is not None
        patient = PatientInfo(
            mrn=cipher.open("patient.mrn", row.mrn_enc),
            name=cipher.open("patient.name", row.name_enc),
            birth_date=date.fromisoformat(cipher.open("patient.birth_date", row.birth_date_enc)),
            sex=cipher.open("patient.sex", row.sex_enc),
        )
    institution = await db.get(Institution, case.home_institution_id)
    assert institution is not None
    return PlanRecord(
        signed=versions[-1],
        patient=patient,
        institution_name=institution.name,
        clinical_question=case.clinical_question,
        summary=cipher.open("case.summary", case.clinical_summary_enc),
        summary_language=case.summary_language,
        translation=cipher.open("case.translation", case.summary_translation_enc)
        if case.summary_translation_enc
        else None,
        translation_language=case.translation_language,
        translator=case.translator,
        versions=versions,
    )
