"""The agreed plan as an HL7 v2.5 MDM message, parsed back with hl7apy and python-hl7."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime
from typing import Any

import hl7  # type: ignore[import-untyped]
from hl7apy.consts import VALIDATION_LEVEL  # type: ignore[import-untyped]
from hl7apy.parser import parse_message  # type: ignore[import-untyped]

from server.export.hl7 import mdm_message
from server.export.record import PlanRecord

# Bigger than hl7apy's strict TX limit once in base64 (65,536 characters), like a real PDF.
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 200 + b"\n%%EOF\n"
AT = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)


def _message(record: PlanRecord) -> str:
    return mdm_message(record, PDF, sending_facility="HZ", control_id="MSG-1", at=AT)


def _hl7apy(er7: str) -> Any:
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    message.validate()  # against the 2.5 MDM_T02 structure
    return message


def _hl7_time(instant: str) -> str:
    """The payload's ISO 8601 UTC instant as an HL7 TS (the demo's times are relative to now)."""
    return datetime.fromisoformat(instant).strftime("%Y%m%d%H%M%S+0000")


def _amended(record: PlanRecord) -> PlanRecord:
    payload = {
        **record.payload,
        "version": 2,
        "previous": {"version": 1, "hash": record.signed["hash"]},
        "amendment_reason": "Pathologic staging changed the plan",
    }
    signed = {**record.signed, "payload": payload, "hash": "sha256:" + "2" * 64}
    return dataclasses.replace(record, signed=signed, versions=[*record.versions, signed])


def _finalized_by(record: PlanRecord, name: str) -> PlanRecord:
    payload = {**record.payload, "finalized_by": {"name": name, "institution": "HZ"}}
    return dataclasses.replace(record, signed={**record.signed, "payload": payload})


def test_first_version_is_an_mdm_t02_in_hl7_2_5_with_utf8(demo_record: PlanRecord) -> None:
    message = _hl7apy(_message(demo_record))
    assert message.msh.msh_9.to_er7() == "MDM^T02^MDM_T02"
    assert message.msh.msh_12.to_er7() == "2.5"
    assert message.msh.msh_18.to_er7() == "UNICODE UTF-8"
    assert message.msh.msh_3.to_er7() == "EBOARD" and message.msh.msh_4.to_er7() == "HZ"
    assert message.msh.msh_10.to_er7() == "MSG-1" and message.msh.msh_11.to_er7() == "P"
    assert message.evn.evn_1.to_er7() == "T02"
    assert message.evn.evn_2.to_er7() == "20261123190000+0000"


def test_home_message_identifies_the_patient_by_mrn(demo_record: PlanRecord) -> None:
    pid = _hl7apy(_message(demo_record)).pid
    assert pid.pid_3.to_er7() == "HZ00054321^^^HZ^MR"
    assert pid.pid_5.to_er7() == "Chen^Hui"
    assert pid.pid_7.to_er7() == "19580909"
    assert pid.pid_8.to_er7() == "M"


def test_external_message_carries_no_patient_identifiers(external_record: PlanRecord) -> None:
    er7 = _message(external_record)
    for identifier in ("Chen", "Hui", "HZ00054321", "19580909"):
        assert identifier not in er7
    pid = _hl7apy(er7).pid
    assert pid.pid_3.to_er7() == "DEMO-0001^^^HZ^ANON"
    assert pid.pid_5.to_er7() == "DEMO-0001^^^^^^S"


def test_document_is_the_signed_plan_authenticated(demo_record: PlanRecord) -> None:
    message = _hl7apy(_message(demo_record))
    txa = message.txa
    assert txa.txa_12.ei_1.to_er7() == demo_record.signed["hash"]
    assert txa.txa_13.to_er7() == ""
    assert txa.txa_17.to_er7() == "AU" and txa.txa_19.to_er7() == "AV"
    assert txa.txa_4.to_er7() == _hl7_time(demo_record.payload["finalized_at"])
    assert txa.txa_9.to_er7() == "^Dr. Zhang Wei (chair)"
    assert message.pv1.pv1_2.to_er7() == "O"
    assert message.pv1.pv1_19.to_er7() == "DEMO-0001^^^HZ^VN"
    assert message.pv1.pv1_44.to_er7() == _hl7_time(demo_record.payload["session"]["start_at"])


def test_pdf_round_trips_through_the_obx_base64(demo_record: PlanRecord) -> None:
    er7 = _message(demo_record)
    obx = _hl7apy(er7).mdm_t02_observation.obx
    assert obx.obx_2.to_er7() == "ED" and obx.obx_11.to_er7() == "F"
    assert obx.obx_3.to_er7() == "18776-5^Plan of care note^LN"
    _, kind, subtype, encoding, data = (c.to_er7() for c in obx.obx_5.children)
    assert (kind, subtype, encoding) == ("application", "pdf", "Base64")
    assert base64.b64decode(data, validate=True) == PDF
    parsed = hl7.parse(er7)
    assert base64.b64decode(str(parsed["OBX.F5.R1.C5"]), validate=True) == PDF


def test_amendment_is_an_mdm_t10_replacing_the_previous_version(
    demo_record: PlanRecord,
) -> None:
    amended = _amended(demo_record)
    message = _hl7apy(_message(amended))
    assert message.msh.msh_9.to_er7() == "MDM^T10^MDM_T02"
    assert message.evn.evn_1.to_er7() == "T10"
    assert message.txa.txa_12.ei_1.to_er7() == amended.signed["hash"]
    assert message.txa.txa_13.ei_1.to_er7() == demo_record.signed["hash"]


def test_chinese_names_survive_the_round_trip(demo_record: PlanRecord) -> None:
    er7 = _message(_finalized_by(demo_record, "张伟 (主任医师)"))
    er7 = er7.encode("utf-8").decode("utf-8")  # as sent, in MSH-18's character set
    assert _hl7apy(er7).txa.txa_9.to_er7() == "^张伟 (主任医师)"
    assert hl7.parse(er7)["TXA.F9.R1.C2"] == "张伟 (主任医师)"


def test_delimiters_in_text_are_escaped(demo_record: PlanRecord) -> None:
    name = "Dr. O^Brien & Co | A~B \\ (chair)"
    assert demo_record.patient is not None
    patient = dataclasses.replace(demo_record.patient, name="Li^&|~\\ Hui")
    record = dataclasses.replace(_finalized_by(demo_record, name), patient=patient)
    er7 = _message(record)
    txa = next(s for s in er7.split("\r") if s.startswith("TXA|"))
    assert "O\\S\\Brien \\T\\ Co \\F\\ A\\R\\B \\E\\ (chair)" in txa
    message = _hl7apy(er7)
    assert message.txa.txa_12.ei_1.to_er7() == demo_record.signed["hash"]  # fields not shifted
    parsed = hl7.parse(er7)
    assert parsed["TXA.F9.R1.C2"] == name
    assert parsed["PID.F5.R1.C1"] == "Li^&|~\\" and parsed["PID.F5.R1.C2"] == "Hui"
