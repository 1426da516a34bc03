"""The record an exporter gets: the signed plan, and the patient only for the home audience."""

from __future__ import annotations

from server.export.record import PlanRecord


def test_home_record_has_the_patient_and_the_signed_plan(demo_record: PlanRecord) -> None:
    assert demo_record.patient is not None and demo_record.patient.mrn == "HZ00054321"
    assert demo_record.payload["case"]["number"] == "DEMO-0001"
    assert demo_record.signed["signature"]["kid"] == "HZ-1"
    assert demo_record.summary_language == "zh-CN" and demo_record.translator


def test_external_record_has_no_patient(external_record: PlanRecord) -> None:
    assert external_record.patient is None
    assert "HZ00054321" not in repr(external_record) and "Chen Hui" not in repr(external_record)
