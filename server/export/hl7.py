"""mdm_message: an agreed plan as an HL7 v2.5 MDM message carrying the plan's PDF.

The first version of a plan is sent as MDM^T02 (original document notification and content);
an amendment as MDM^T10 (document replacement notification and content), whose TXA-13 names the
version it replaces. Both events use the MDM_T02 message structure, as HL7 v2.5 defines.

Segments: MSH, EVN, PID, PV1, TXA, and one OBX whose ED value is the PDF in base64. For an
external audience (``record.patient`` is None) PID carries only the case number, as an anonymous
identifier, and a coded pseudo-name instead of the patient's name.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from typing import Any

from hl7apy.base_datatypes import ST  # type: ignore[import-untyped]
from hl7apy.consts import VALIDATION_LEVEL  # type: ignore[import-untyped]
from hl7apy.core import Message  # type: ignore[import-untyped]

from .record import PatientInfo, PlanRecord

__all__ = ["mdm_message"]

_VERSION = "2.5"
# Built tolerant, then validated as a whole against the 2.5 structures: hl7apy's strict mode
# checks lengths on assignment, and the PDF's base64 outgrows TX's 65,536 characters (real MDM
# receivers take it; the standard's lengths are conformance hints here).
_BUILD = VALIDATION_LEVEL.TOLERANT
_SENDING_APPLICATION = "EBOARD"
_DOCUMENT_NAMESPACE = "EBOARD"  # assigns TXA-12/13: the signed version's hash
_DOCUMENT_TYPE = "MDT"  # TXA-2, user-defined table 0270: a multidisciplinary tumor board plan
_DOCUMENT_CODE = ("18776-5", "Plan of care note", "LN")  # OBX-3, as in the FHIR Composition
_SEX = {"female": "F", "male": "M", "other": "O", "unknown": "U"}  # table 0001


def mdm_message(
    record: PlanRecord,
    pdf: bytes,
    *,
    sending_facility: str,
    receiving_application: str = "EHR",
    receiving_facility: str = "",
    control_id: str,
    at: datetime,
) -> str:
    """The ER7 text (segments separated by ``\\r``) of the MDM message for ``record``'s plan
    with ``pdf`` as its content. ``sending_facility`` is MSH-4 (normally the home institution's
    code); ``control_id`` is MSH-10; ``at`` (timezone-aware) is when the message is made."""
    payload = record.payload
    event = "T02" if payload["previous"] is None else "T10"
    message = Message("MDM_T02", version=_VERSION, validation_level=_BUILD)

    msh = message.msh
    msh.msh_3 = _text(_SENDING_APPLICATION)
    msh.msh_4 = _text(sending_facility)
    msh.msh_5 = _text(receiving_application)
    if receiving_facility:
        msh.msh_6 = _text(receiving_facility)
    msh.msh_7 = _timestamp(at)
    msh.msh_9 = f"MDM^{event}^MDM_T02"
    msh.msh_10 = _text(control_id)
    msh.msh_11 = "P"
    msh.msh_18 = "UNICODE UTF-8"  # names and the note may be Chinese

    message.evn.evn_1 = event
    message.evn.evn_2 = _timestamp(at)

    _patient(message.pid, record)
    _visit(message.pv1, payload)
    _document(message.txa, record)
    _content(message.mdm_t02_observation.obx, pdf)

    message.validate()  # raises hl7apy's ValidationError if a segment breaks the 2.5 structure
    er7: str = message.to_er7()
    return er7


def _patient(pid: Any, record: PlanRecord) -> None:
    case = record.payload["case"]
    institution = case["institution"]
    pid.pid_1 = "1"
    patient = record.patient
    if patient is None:
        # Table 0203's ANON (anonymous identifier): the pseudonymous case number stands in for
        # the MRN. PID-5 is required, so it gets the case number as a coded pseudo-name
        # (table 0200's S, "coded pseudo-name to assure anonymity").
        pid.pid_3 = _components(case["number"], "", "", institution, "ANON")
        pid.pid_5 = _components(case["number"], "", "", "", "", "", "S")
        return
    pid.pid_3 = _components(patient.mrn, "", "", institution, "MR")
    pid.pid_5 = _components(*_family_given(patient))
    pid.pid_7 = _date(patient.birth_date)
    pid.pid_8 = _SEX.get(patient.sex, "U")


def _family_given(patient: PatientInfo) -> tuple[str, str]:
    # A simplification: eBoard keeps the name as one string, written family name first (as
    # "Chen Hui"), so the first space splits family from given; a name without one is all family.
    family, _, given = patient.name.strip().partition(" ")
    return family, given.strip()


def _visit(pv1: Any, payload: dict[str, Any]) -> None:
    case = payload["case"]
    pv1.pv1_1 = "1"
    pv1.pv1_2 = "O"  # the board discussed the case as an outpatient encounter
    pv1.pv1_19 = _components(case["number"], "", "", case["institution"], "VN")
    session = payload.get("session")
    if session is not None:
        pv1.pv1_44 = _timestamp(_instant(session["start_at"]))
        if session.get("end_at"):
            pv1.pv1_45 = _timestamp(_instant(session["end_at"]))


def _document(txa: Any, record: PlanRecord) -> None:
    payload = record.payload
    finalized_by = payload["finalized_by"]["name"]
    finalized_at = _timestamp(_instant(payload["finalized_at"]))
    txa.txa_1 = "1"
    txa.txa_2 = _DOCUMENT_TYPE
    txa.txa_3 = "AP"  # table 0191: other application data (the PDF)
    txa.txa_4 = finalized_at
    # eBoard has staff names only as display strings: the whole of it is the XCN family name.
    txa.txa_9 = _components("", finalized_by)
    txa.txa_12 = _components(record.signed["hash"], _DOCUMENT_NAMESPACE)
    if payload["previous"] is not None:
        txa.txa_13 = _components(payload["previous"]["hash"], _DOCUMENT_NAMESPACE)
    txa.txa_17 = "AU"  # authenticated: the plan is signed
    txa.txa_19 = "AV"
    # Who authenticated it and when: PPN-2 (family name) and PPN-15 (date/time of the action).
    txa.txa_22 = _components("", finalized_by, *[""] * 12, finalized_at)


def _content(obx: Any, pdf: bytes) -> None:
    obx.obx_1 = "1"
    obx.obx_2 = "ED"
    obx.obx_3 = _components(*_DOCUMENT_CODE)
    # ED as MIME type and subtype (what receivers of v2.5 MDM documents expect in practice);
    # base64 has no HL7 delimiter in its alphabet, so the data needs no escaping.
    obx.obx_5 = "^application^pdf^Base64^" + base64.b64encode(pdf).decode("ascii")
    obx.obx_11 = "F"


def _text(value: str) -> str:
    """``value`` as ER7 text, HL7 delimiters escaped by the library (\\S\\, \\T\\, \\F\\, ...)."""
    escaped: str = ST(value, validation_level=_BUILD).to_er7()
    return escaped


def _components(*values: str) -> str:
    return "^".join(_text(value) for value in values)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def _date(value: date) -> str:
    return value.strftime("%Y%m%d")
