"""mCODE STU4 content of a consensus note as FHIR R4 resources (R4B models), for the plan's
document Bundle (fhir.py): the findings (cancer, staging, performance status, biomarkers) and the
plan (a CarePlan whose activities are the ranked recommendations, each with its intent).

Coded values are written with the system their template field declares (``x-system``) and the
template's English label as display. Values a template defines itself (biomarker results) get the
template's URL plus the field's path as a local system, so a receiver can tell them apart.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource
from fhir.resources.R4B.servicerequest import ServiceRequest

from ..notes.templates import TemplateSet

__all__ = ["TRIAL_SYSTEM", "Entry", "Findings", "Scope", "care_plan", "findings"]

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
TRIAL_SYSTEM = "https://clinicaltrials.gov"
_MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"

# One resource of the bundle and its role: the name its deterministic fullUrl is made from.
Entry = tuple[str, Resource]


@dataclass(frozen=True)
class Scope:
    """What the resources of one plan's bundle share: a fullUrl per role (the same plan always
    gives the same UUIDs), the note's template and the time the board recorded its findings.

    A role names one resource of the bundle ("patient", "encounter", "condition", "careplan",
    "composition", "staging/t", "request/1", …); references between resources go by role."""

    seed: str  # what makes its UUIDs: the plan's hash and which document of it this is
    templates: TemplateSet
    template: str
    schema: dict[str, Any]  # the template, $refs inlined
    recorded: str

    @classmethod
    def of(cls, seed: str, templates: TemplateSet, payload: dict[str, Any]) -> Scope:
        session = payload.get("session") or {}
        template = payload["template"]
        return cls(
            seed,
            templates,
            template,
            templates.bundle(template),
            session.get("start_at") or payload["finalized_at"],
        )

    def url(self, role: str) -> str:
        plan = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:eboard:plan:{self.seed}")
        return f"urn:uuid:{uuid.uuid5(plan, role)}"

    def ref(self, role: str, display: str | None = None) -> dict[str, Any]:
        return {"reference": self.url(role), **({"display": display} if display else {})}

    def label(self, path: str) -> str:
        return self.templates.label(self.template, path, "en")

    def choice(self, path: str, value: Any) -> str:
        return self.templates.choice_label(self.template, path, value, "en")

    def coding(self, path: str, value: Any) -> dict[str, Any]:
        """A coded field's value as a Coding."""
        system = self.field(path).get("x-system") or f"{self.schema['$id']}#{path}"
        return {"system": system, "code": str(value), "display": self.choice(path, value)}

    def concept(self, path: str, value: Any) -> dict[str, Any]:
        return {"coding": [self.coding(path, value)], "text": self.choice(path, value)}

    def field(self, path: str) -> dict[str, Any]:
        """A field's schema by dot path."""
        node = self.schema
        for segment in path.split("."):
            node = node.get("items", node)["properties"][segment]
        return node


@dataclass(frozen=True)
class Findings:
    """The note's findings as resources, grouped as the Composition's sections show them."""

    condition: Entry
    staging: list[Entry]
    ecog: Entry | None
    biomarkers: list[Entry]

    def entries(self) -> list[Entry]:
        return [
            self.condition,
            *self.staging,
            *([self.ecog] if self.ecog else []),
            *self.biomarkers,
        ]


def findings(scope: Scope, note: dict[str, Any]) -> Findings:
    """Condition, TNM and stage-group Observations, ECOG and biomarker Observations."""
    ecog = note.get("ecog")
    return Findings(
        condition=("condition", _condition(scope, note["primary_cancer"])),
        staging=_staging(scope, note["staging"]),
        ecog=None if ecog is None else ("ecog", _ecog(scope, ecog)),
        biomarkers=[
            (f"biomarker/{name}", _biomarker(scope, name, value))
            for name, value in note.get("biomarkers", {}).items()
        ],
    )


def care_plan(
    scope: Scope, note: dict[str, Any], requester: dict[str, Any], authored: str
) -> list[Entry]:
    """The CarePlan, then its activities: one proposal per recommendation in the board's rank
    order, a MedicationRequest for systemic therapy and a ServiceRequest for anything else."""
    intent = {
        "url": _MCODE + "mcode-procedure-intent",
        "valueCodeableConcept": scope.concept("intent", note["intent"]),
    }
    common = {
        "extension": [intent],
        "status": "active",
        "intent": "proposal",
        "subject": scope.ref("patient"),
        "encounter": scope.ref("encounter"),
        "authoredOn": authored,
        "requester": requester,
        "reasonReference": [scope.ref("condition")],
    }
    requests = [
        (f"request/{rank}", _request(scope, recommendation, common))
        for rank, recommendation in enumerate(note["recommendations"], start=1)
    ]
    plan = CarePlan.model_validate(
        {
            "status": "active",
            "intent": "plan",
            "title": "Tumor board agreed plan",
            "description": note["rationale"],
            "subject": scope.ref("patient"),
            "encounter": scope.ref("encounter"),
            "created": authored,
            "author": requester,
            "addresses": [scope.ref("condition")],
            "supportingInfo": [scope.ref("staging/stage_group")],
            "activity": [{"reference": scope.ref(role)} for role, _ in requests],
        }
    )
    return [("careplan", plan), *requests]


# Recommendation types with a SNOMED CT procedure code; the others are described in text only.
_SERVICE_CODES = {
    "surgery": ("387713003", "Surgical procedure"),
    "radiotherapy": ("108290001", "Radiation oncology AND/OR radiotherapy"),
    "palliative_care": ("103735009", "Palliative care"),
    "further_imaging": ("363679005", "Imaging"),
}


def _request(scope: Scope, recommendation: dict[str, Any], common: dict[str, Any]) -> Resource:
    kind, detail = recommendation["type"], recommendation.get("detail")
    text = scope.choice("recommendations.type", kind) + (f": {detail}" if detail else "")
    if kind == "systemic_therapy":
        concept = {"text": detail or text}
        return MedicationRequest.model_validate(common | {"medicationCodeableConcept": concept})
    code: dict[str, Any] = {"text": text}
    if kind in _SERVICE_CODES:
        sct, display = _SERVICE_CODES[kind]
        code["coding"] = [{"system": SNOMED, "code": sct, "display": display}]
    data = common | {"code": code}
    if recommendation.get("nct_number"):
        # A logical reference: the trial is named by its registry number, not described.
        nct = recommendation["nct_number"]
        trial = {"system": TRIAL_SYSTEM, "value": nct}
        data["supportingInfo"] = [{"type": "ResearchStudy", "identifier": trial, "display": nct}]
    return ServiceRequest.model_validate(data)


def _condition(scope: Scope, cancer: dict[str, Any]) -> Condition:
    data: dict[str, Any] = {
        "meta": {"profile": [_MCODE + "mcode-primary-cancer-condition"]},
        "clinicalStatus": _concept(_TERMINOLOGY + "condition-clinical", "active"),
        "category": [_concept(_TERMINOLOGY + "condition-category", "problem-list-item")],
        "code": scope.concept("primary_cancer.code", cancer["code"]),
        "subject": scope.ref("patient"),
        "encounter": scope.ref("encounter"),
        "recordedDate": scope.recorded,
    }
    if "histology" in cancer:
        histology = scope.concept("primary_cancer.histology", cancer["histology"])
        data["extension"] = [
            {
                "url": _MCODE + "mcode-histology-morphology-behavior",
                "valueCodeableConcept": histology,
            }
        ]
        # A histology is a tissue diagnosis; without one the board's diagnosis stays unverified.
        data["verificationStatus"] = _concept(_TERMINOLOGY + "condition-ver-status", "confirmed")
    if "laterality" in cancer:
        # The note codes the side but not the site (the diagnosis code implies the organ).
        side = scope.concept("primary_cancer.laterality", cancer["laterality"])
        data["bodySite"] = [
            {
                "extension": [
                    {"url": _MCODE + "mcode-laterality-qualifier", "valueCodeableConcept": side}
                ]
            }
        ]
    return Condition.model_validate(data)


# The kind of staging a prefix means: c and yc are clinical, p and yp pathological.
_KIND = {"c": "clinical", "yc": "clinical", "p": "pathological", "yp": "pathological"}

# axis -> (mCODE profile, {kind: (SNOMED staging type, its display, LOINC code or None)}).
_AXES: dict[str, tuple[str, dict[str, tuple[str, str, str | None]]]] = {
    "t": (
        "mcode-tnm-primary-tumor-category",
        {
            "clinical": ("399504009", "cT category", "21905-5"),
            "pathological": ("384625004", "pT category", "21899-0"),
            "unspecified": ("78873005", "T category", None),
        },
    ),
    "n": (
        "mcode-tnm-regional-nodes-category",
        {
            "clinical": ("399534004", "cN category", "21906-3"),
            "pathological": ("371494008", "pN category", "21900-6"),
            "unspecified": ("277206009", "N category", None),
        },
    ),
    "m": (
        "mcode-tnm-distant-metastases-category",
        {
            "clinical": ("399387003", "cM category", "21907-1"),
            "pathological": ("371497001", "pM category", "21901-4"),
            "unspecified": ("277208005", "M category", None),
        },
    ),
    "stage_group": (
        "mcode-tnm-stage-group",
        {
            "clinical": ("399537006", "Clinical TNM stage grouping", "21908-9"),
            "pathological": ("399588009", "Pathologic TNM stage grouping", "21902-2"),
            "unspecified": ("399390009", "TNM stage grouping", None),
        },
    ),
}


def _staging(scope: Scope, staging: dict[str, Any]) -> list[Entry]:
    """The T, N and M category Observations present, then the stage group with them as members."""
    prefix = staging.get("prefix", "")
    kind = _KIND.get(prefix, "unspecified")
    method = scope.concept("staging.system", staging["system"])
    categories: list[Entry] = []
    for axis in ("t", "n", "m"):
        if axis in staging:
            value = staging[axis]
            coding = scope.coding(f"staging.{axis}", value)
            # The note keeps the categories without their prefix; the AJCC code carries it.
            coding |= {"code": prefix + value, "display": prefix + coding["display"]}
            observation = _tnm(
                scope, axis, kind, method, {"coding": [coding], "text": prefix + value}
            )
            categories.append((f"staging/{axis}", observation))
    group = scope.concept("staging.stage_group", staging["stage_group"])
    members = [scope.ref(role) for role, _ in categories]
    return [
        *categories,
        ("staging/stage_group", _tnm(scope, "stage_group", kind, method, group, members)),
    ]


def _tnm(
    scope: Scope,
    axis: str,
    kind: str,
    method: dict[str, Any],
    value: dict[str, Any],
    members: list[dict[str, Any]] | None = None,
) -> Observation:
    profile, kinds = _AXES[axis]
    snomed, display, loinc = kinds[kind]
    codings = [{"system": SNOMED, "code": snomed, "display": display}]
    if loinc is not None:
        codings.append({"system": LOINC, "code": loinc})
    data = _observation(scope, _MCODE + profile, {"coding": codings})
    data |= {"valueCodeableConcept": value, "method": method, "focus": [scope.ref("condition")]}
    if members:
        data["hasMember"] = members
    return Observation.model_validate(data)


def _ecog(scope: Scope, score: int) -> Observation:
    code = {"coding": [{"system": LOINC, "code": "89247-1"}], "text": scope.label("ecog")}
    data = _observation(scope, _MCODE + "mcode-ecog-performance-status", code)
    data |= {"valueInteger": score, "interpretation": [{"text": scope.choice("ecog", score)}]}
    return Observation.model_validate(data)


def _biomarker(scope: Scope, name: str, value: Any) -> Observation:
    """A biomarker result coded by the template itself: no LOINC code is certain for every
    template's fields (assay and specimen are not recorded), so none is claimed."""
    path = f"biomarkers.{name}"
    label = scope.label(path)
    code = {
        "coding": [{"system": scope.schema["$id"], "code": path, "display": label}],
        "text": label,
    }
    data = _observation(scope, None, code)
    data["category"] = [_concept(_TERMINOLOGY + "observation-category", "laboratory")]
    if value == "not_tested":
        absent = _concept(_TERMINOLOGY + "data-absent-reason", "not-performed")
        data["dataAbsentReason"] = absent | {"text": scope.choice(path, value)}
    elif isinstance(value, int | float):
        field = scope.field(path)
        percent = field.get("minimum") == 0 and field.get("maximum") == 100  # common.json#percent
        unit = {"unit": "%", "system": UCUM, "code": "%"} if percent else {}
        data["valueQuantity"] = {"value": value, **unit}
    else:
        data["valueCodeableConcept"] = scope.concept(path, value)
    return Observation.model_validate(data)


def _observation(scope: Scope, profile: str | None, code: dict[str, Any]) -> dict[str, Any]:
    return {
        **({"meta": {"profile": [profile]}} if profile else {}),
        "status": "final",
        "code": code,
        "subject": scope.ref("patient"),
        "encounter": scope.ref("encounter"),
        "effectiveDateTime": scope.recorded,
    }


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}
