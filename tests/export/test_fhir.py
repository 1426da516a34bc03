"""The agreed plan as a FHIR R4 document Bundle, parsed back with fhir.resources' R4B models."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from server.export.fhir import (
    AGREED_PLAN_SYSTEM,
    CASE_NUMBER_SYSTEM,
    PLAN_HASH_SYSTEM,
    plan_bundle,
)
from server.export.mcode import TRIAL_SYSTEM
from server.export.record import PlanRecord
from server.notes.signature import canonical, digest
from server.notes.templates import TemplateSet
from server.services import Services
from server.signing import from_b64url

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
LOINC = "http://loinc.org"
EXAMPLES = Path(__file__).resolve().parents[1] / "notes" / "examples"


@pytest.fixture(scope="module")
def templates() -> TemplateSet:
    return TemplateSet()


def _parse(record: PlanRecord, templates: TemplateSet, **options: Any) -> Bundle:
    """The bundle as a receiver gets it: JSON text, read by the third-party parser."""
    text = json.dumps(plan_bundle(record, templates, **options), ensure_ascii=False)
    return Bundle.model_validate_json(text)


def _resources(bundle: Bundle, kind: str) -> list[Any]:
    return [e.resource for e in bundle.entry if type(e.resource).__name__ == kind]


def _one(bundle: Bundle, kind: str) -> Any:
    (resource,) = _resources(bundle, kind)
    return resource


def _at(bundle: Bundle, url: str) -> Any:
    return next(e.resource for e in bundle.entry if e.fullUrl == url)


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return own + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def _with_payload(record: PlanRecord, **changes: Any) -> PlanRecord:
    payload = copy.deepcopy(record.payload) | changes
    signed = {**record.signed, "payload": payload, "hash": digest(payload)}
    return dataclasses.replace(record, signed=signed, versions=[*record.versions, signed])


def test_bundle_is_a_document_led_by_a_plan_of_care_composition(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    data = plan_bundle(demo_record, templates)
    bundle = Bundle.model_validate_json(json.dumps(data))
    assert bundle.type == "document"
    assert bundle.identifier.system == "urn:ietf:rfc:3986"
    assert bundle.identifier.value.startswith("urn:uuid:")
    composition = bundle.entry[0].resource
    assert type(composition).__name__ == "Composition" and composition.status == "final"
    assert (composition.identifier.system, composition.identifier.value) == (
        AGREED_PLAN_SYSTEM,
        "HZ/DEMO-0001",
    )
    assert [(c.system, c.code) for c in composition.type.coding] == [(LOINC, "18776-5")]
    titles = [s.title for s in composition.section]
    assert titles[:2] == ["Primary cancer", "Staging (TNM)"] and titles[-1] == "Attendance"
    assert {"Biomarkers", "Recommendations (ranked)", "Rationale"} <= set(titles)
    assert all(s.text.div.startswith("<div") for s in composition.section)
    assert all(e.fullUrl.startswith("urn:uuid:") for e in bundle.entry)
    # Every reference resolves inside the document.
    urls = {e["fullUrl"] for e in data["entry"]}
    assert set(_references(data["entry"])) <= urls
    assert bundle.model_dump(mode="json") == data


def test_home_patient_carries_the_mrn_assigned_by_the_institution(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    bundle = _parse(demo_record, templates)
    patient = _one(bundle, "Patient")
    (mrn,) = patient.identifier
    assert mrn.value == "HZ00054321" and mrn.type.coding[0].code == "MR"
    assert _at(bundle, mrn.assigner.reference).name == "Hangzhou First Hospital"
    assert patient.name[0].text == "Chen Hui" and str(patient.birthDate) == "1958-09-09"
    assert patient.gender == "male"


def test_external_bundle_holds_nothing_that_identifies_the_patient(
    external_record: PlanRecord, demo_record: PlanRecord, templates: TemplateSet
) -> None:
    text = json.dumps(plan_bundle(external_record, templates), ensure_ascii=False)
    # A different document from the home audience's: its own identifier and fullUrls.
    home = plan_bundle(demo_record, templates)
    external = json.loads(text)
    assert external["identifier"] != home["identifier"]
    assert not {e["fullUrl"] for e in external["entry"]} & {e["fullUrl"] for e in home["entry"]}
    for secret in ("Chen Hui", "HZ00054321", "1958-09-09", "birthDate", "gender"):
        assert secret not in text
    patient = _one(Bundle.model_validate_json(text), "Patient")
    assert [(i.system, i.value) for i in patient.identifier] == [(CASE_NUMBER_SYSTEM, "DEMO-0001")]
    assert patient.name is None


def test_condition_is_an_mcode_primary_cancer_with_histology_and_laterality(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    condition = _one(_parse(demo_record, templates), "Condition")
    assert condition.meta.profile == [MCODE + "mcode-primary-cancer-condition"]
    assert condition.code.coding[0].code == "254637007"
    assert condition.code.coding[0].system == "http://snomed.info/sct"
    (histology,) = condition.extension
    assert histology.url == MCODE + "mcode-histology-morphology-behavior"
    assert histology.valueCodeableConcept.coding[0].code == "1162767002"
    (side,) = condition.bodySite[0].extension
    assert side.url == MCODE + "mcode-laterality-qualifier"
    assert side.valueCodeableConcept.coding[0].code == "24028007"


def test_stage_group_iib_has_the_clinical_tnm_categories_as_members(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    bundle = _parse(demo_record, templates)
    profiled = [o for o in _resources(bundle, "Observation") if o.meta is not None]
    (group,) = [o for o in profiled if o.meta.profile == [MCODE + "mcode-tnm-stage-group"]]
    assert group.valueCodeableConcept.coding[0].code == "IIB"
    assert (LOINC, "21908-9") in [(c.system, c.code) for c in group.code.coding]
    assert group.method.coding[0].code == "897275008"
    members = [_at(bundle, m.reference) for m in group.hasMember]
    assert [m.valueCodeableConcept.coding[0].code for m in members] == ["cT3", "cN0", "cM0"]
    assert [m.meta.profile[0].rsplit("/", 1)[1] for m in members] == [
        "mcode-tnm-primary-tumor-category",
        "mcode-tnm-regional-nodes-category",
        "mcode-tnm-distant-metastases-category",
    ]
    loinc = [next(c.code for c in m.code.coding if c.system == LOINC) for m in members]
    assert loinc == ["21905-5", "21906-3", "21907-1"]
    assert all(
        m.valueCodeableConcept.coding[0].system == "http://cancerstaging.org" for m in members
    )


def test_ecog_and_biomarkers_are_observations(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    observations = _resources(_parse(demo_record, templates), "Observation")
    (ecog,) = [o for o in observations if o.code.coding[0].code == "89247-1"]
    assert ecog.meta.profile == [MCODE + "mcode-ecog-performance-status"] and ecog.valueInteger == 1
    by_code = {o.code.coding[0].code: o for o in observations}
    assert by_code["biomarkers.pd_l1_tps"].valueQuantity.value == 30
    assert by_code["biomarkers.egfr"].valueCodeableConcept.coding[0].code == "not_detected"


def test_care_plan_activities_follow_the_rank_order_with_the_procedure_intent(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    bundle = _parse(demo_record, templates)
    plan = _one(bundle, "CarePlan")
    assert (plan.status, plan.intent) == ("active", "plan")
    assert plan.description == demo_record.payload["note"]["rationale"]
    assert _at(bundle, plan.addresses[0].reference) is _one(bundle, "Condition")
    requests = [_at(bundle, a.reference.reference) for a in plan.activity]
    assert [type(r).__name__ for r in requests] == ["ServiceRequest", "MedicationRequest"]
    surgery, chemotherapy = requests
    assert surgery.code.coding[0].code == "387713003"
    assert "lobectomy" in surgery.code.text
    assert chemotherapy.medicationCodeableConcept.text == "Adjuvant cisplatin-vinorelbine, 4 cycles"
    for request in requests:
        assert request.intent == "proposal"
        (intent,) = request.extension
        assert intent.url == MCODE + "mcode-procedure-intent"
        assert intent.valueCodeableConcept.coding[0].code == "373808002"


def test_encounter_participants_are_the_attendees_with_their_periods(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    bundle = _parse(demo_record, templates)
    encounter = _one(bundle, "Encounter")
    assert encounter.class_fhir.code == "VR"
    attendance = demo_record.payload["attendance"]
    assert len(encounter.participant) == len(attendance) == 6
    for participant, row in zip(encounter.participant, attendance, strict=True):
        practitioner = _at(bundle, participant.individual.reference)
        assert practitioner.name[0].text == row["name"]
        assert participant.period.start.isoformat().replace("+00:00", "Z") == row["joined_at"]
        assert participant.period.end.isoformat().replace("+00:00", "Z") == row["left_at"]
    carter = next(p for p in _resources(bundle, "Practitioner") if "Carter" in p.name[0].text)
    assert carter.qualification[0].code.text == "Medical oncology"


def test_provenance_holds_the_signers_signature(
    demo_record: PlanRecord, templates: TemplateSet, services: Services
) -> None:
    bundle = _parse(demo_record, templates)
    provenance = _one(bundle, "Provenance")
    assert provenance.target[0].reference == bundle.entry[0].fullUrl
    (signature,) = provenance.signature
    assert signature.type[0].code == "1.2.840.10065.1.12.1.1"
    # Not a JWS, so no sigFormat claims one; the data verifies over the canonical payload.
    assert signature.sigFormat is None and signature.targetFormat == "application/json"
    signer = demo_record.payload["finalized_by"]
    assert _at(bundle, signature.who.reference).name[0].text == signer["name"]
    assert _at(bundle, signature.onBehalfOf.reference).identifier[0].value == signer["institution"]
    value = demo_record.signed["signature"]
    assert signature.data == from_b64url(value["value"])  # the parser decodes base64Binary
    assert signature.extension[0].valueString == value["kid"]
    assert provenance.entity[0].what.identifier.value == demo_record.signed["hash"]
    key = services.signing.public(value["kid"])
    assert key is not None
    key.verify(signature.data, canonical(demo_record.payload))  # raises if it does not


def test_the_same_record_gives_the_same_bundle(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    first = json.dumps(plan_bundle(demo_record, templates))
    assert json.dumps(plan_bundle(demo_record, templates)) == first
    other = _with_payload(demo_record, version=2)
    assert json.dumps(plan_bundle(other, templates)) != first


def test_an_amendment_replaces_the_previous_version(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    amended = _with_payload(
        demo_record,
        version=2,
        previous={"version": 1, "hash": demo_record.signed["hash"]},
        amendment_reason="Pathologic staging after surgery: pN1",
    )
    bundle = _parse(amended, templates)
    composition = bundle.entry[0].resource
    (relation,) = composition.relatesTo
    assert relation.code == "replaces"
    assert relation.targetIdentifier.system == PLAN_HASH_SYSTEM
    assert relation.targetIdentifier.value == demo_record.signed["hash"]
    # The same composition (version-independent identifier), a new document.
    original = _parse(demo_record, templates)
    assert composition.identifier == original.entry[0].resource.identifier
    assert bundle.identifier.value != original.identifier.value
    assert "Amendment" in [s.title for s in composition.section]
    revision = [e for e in _one(bundle, "Provenance").entity if e.role == "revision"]
    assert revision[0].what.identifier.value == demo_record.signed["hash"]


def test_a_clinical_trial_recommendation_carries_its_nct_number(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    note = json.loads((EXAMPLES / "thoracic.json").read_text(encoding="utf-8"))
    bundle = _parse(_with_payload(demo_record, note=note), templates)
    requests = [_at(bundle, a.reference.reference) for a in _one(bundle, "CarePlan").activity]
    assert [type(r).__name__ for r in requests] == [
        "ServiceRequest",
        "MedicationRequest",
        "ServiceRequest",
    ]
    (trial,) = requests[2].supportingInfo
    assert (trial.type, trial.identifier.system, trial.identifier.value) == (
        "ResearchStudy",
        TRIAL_SYSTEM,
        "NCT01234567",
    )
    stage = [o for o in _resources(bundle, "Observation") if o.hasMember]
    assert stage[0].valueCodeableConcept.coding[0].code == "IIIA"


def test_a_given_pdf_becomes_a_document_reference(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    pdf = b"%PDF-1.7\n%fake but bytes\n"
    bundle = _parse(demo_record, templates, pdf=pdf)
    reference = _one(bundle, "DocumentReference")
    attachment = reference.content[0].attachment
    assert attachment.contentType == "application/pdf"
    assert attachment.data == pdf
    assert not _resources(_parse(demo_record, templates), "DocumentReference")
