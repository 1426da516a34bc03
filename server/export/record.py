"""PlanRecord: everything an exporter needs about one agreed plan, gathered once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

__all__ = ["PatientInfo", "PlanRecord"]


@dataclass(frozen=True)
class PatientInfo:
    """The patient as the home institution knows them (never given to external audiences)."""

    mrn: str
    name: str
    birth_date: date
    sex: str  # female | male | other | unknown


@dataclass(frozen=True)
class PlanRecord:
    """One signed version of a case's agreed plan with its context.

    ``signed`` is the signed version exactly as stored: ``{"payload", "hash", "signature"}``
    (see server/notes/signature.py and server/notes/plan.py for the payload's fields:
    format, case{number, institution}, version, previous, amendment_reason, template, note,
    session{id, board, start_at, end_at}, attendance[{name, specialty, institution, role,
    joined_at, left_at}], quorum{required, present, missing}, finalized_by{name, institution},
    finalized_at). ``patient`` is None for an external audience: then only the case number
    identifies the case.
    """

    signed: dict[str, Any]
    patient: PatientInfo | None
    institution_name: str
    clinical_question: str
    summary: str
    summary_language: str  # en | zh-CN
    translation: str | None
    translation_language: str | None
    translator: str | None
    versions: list[dict[str, Any]]  # every signed version, oldest first (amendment history)

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.signed["payload"]
        return payload
