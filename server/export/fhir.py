"""The agreed plan as a FHIR R4 document Bundle, built and validated with fhir.resources' R4B
models (R4B shares R4's resources for everything here; the package's default models are R5).

The bundle holds: the Composition first, the Patient, the Encounter of the board discussion with
its attendance, the Practitioners and Organizations, the mCODE findings (mcode.py), the CarePlan
with one request per recommendation, the Provenance of the signature and, when given, the PDF as
a DocumentReference. For an external audience the Patient carries only the case number.

Identifiers: the Bundle's is a UUID unique to the document (one plan version for one audience
with one PDF); the Composition's is version-independent (``urn:eboard:agreed-plan``,
"<institution>/<case number>"); the plan's hash (``sha256:…``, ``urn:eboard:plan-hash``) names
one signed version in the Provenance, and an amendment's Composition replaces its predecessor's
hash; ``urn:eboard:case-number`` and ``urn:eboard:institution``.

The document type is LOINC 18776-5 "Plan of care note": what a board agrees is a plan of care,
EHRs file notes by LOINC document-ontology codes such as this one, and we know of no
tumor-board-specific document code that receivers would file more reliably.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.composition import Composition
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.provenance import Provenance

from ..notes.templates import TemplateSet
from ..signing import from_b64url
from .mcode import LOINC, Entry, Findings, Scope, care_plan, findings
from .record import PlanRecord

__all__ = [
    "CASE_NUMBER_SYSTEM",
    "PLAN_HASH_SYSTEM",
    "AGREED_PLAN_SYSTEM",
    "SIGNING_KEY_EXTENSION",
    "plan_bundle",
]

PLAN_HASH_SYSTEM = "urn:eboard:plan-hash"
# A case's agreed plan through all its versions: "<institution code>/<case number>".
AGREED_PLAN_SYSTEM = "urn:eboard:agreed-plan"
CASE_NUMBER_SYSTEM = "urn:eboard:case-number"
INSTITUTION_SYSTEM = "urn:eboard:institution"
# Names the institution key (JWK kid) that made a Provenance signature; its JWKS verifies it.
SIGNING_KEY_EXTENSION = "https://eboard.example/fhir/StructureDefinition/signing-key-id"

_XHTML = "http://www.w3.org/1999/xhtml"
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"

_DOCUMENT_TYPE = {
    "coding": [{"system": LOINC, "code": "18776-5", "display": "Plan of care note"}],
    "text": "Tumor board agreed plan",
}


def plan_bundle(
    record: PlanRecord, templates: TemplateSet, *, pdf: bytes | None = None
) -> dict[str, Any]:
    """The plan's FHIR document Bundle as JSON; the same record always gives the same Bundle.

    Its identifier and fullUrls are UUIDv5 of the plan's hash and of which document of it this
    is (home or external audience, the PDF it carries), and each resource's role: the home and
    the external Bundle of one plan are different documents, with different identifiers."""
    payload = record.payload
    audience = "external" if record.patient is None else "home"
    attached = hashlib.sha256(pdf).hexdigest() if pdf is not None else "none"
    scope = Scope.of(f"{record.signed['hash']}|{audience}|{attached}", templates, payload)
    found = findings(scope, payload["note"])
    entries: list[Entry] = [
        ("composition", _composition(scope, record, found, pdf is not None)),
        ("patient", _patient(scope, record)),
        ("encounter", _encounter(scope, payload, record.institution_name)),
        *_people(scope, payload, record.institution_name),
        *found.entries(),
        *care_plan(scope, payload["note"], _finalizer(scope, payload), payload["finalized_at"]),
        ("provenance", _provenance(scope, record)),
    ]
    if pdf is not None:
        entries.append(("pdf", _document_reference(scope, payload, pdf)))
    bundle = Bundle.model_validate(
        {
            # A document's identifier: this Bundle, unique to it (FHIR's document rules).
            "identifier": {"system": "urn:ietf:rfc:3986", "value": scope.url("bundle")},
            "type": "document",
            "timestamp": payload["finalized_at"],
            "entry": [{"fullUrl": scope.url(role), "resource": res} for role, res in entries],
        }
    )
    result: dict[str, Any] = bundle.model_dump(mode="json")
    return result


def _composition(scope: Scope, record: PlanRecord, found: Findings, pdf: bool) -> Composition:
    payload = record.payload
    case, version = payload["case"]["number"], payload["version"]
    data: dict[str, Any] = {
        # Version-independent, as R4 asks: the case's agreed plan; each version's hash is in
        # the Provenance, and an amendment's relatesTo names the hash it replaces.
        "identifier": {
            "system": AGREED_PLAN_SYSTEM,
            "value": f"{payload['case']['institution']}/{case}",
        },
        "status": "final",
        "type": _DOCUMENT_TYPE,
        "subject": scope.ref("patient"),
        "encounter": scope.ref("encounter"),
        "date": payload["finalized_at"],
        "author": [_finalizer(scope, payload), _organization_ref(scope, payload)],
        "title": f"Tumor board agreed plan: {scope.label('')}, case {case}, version {version}",
        "attester": [
            {"mode": "legal", "time": payload["finalized_at"], "party": _finalizer(scope, payload)}
        ],
        "custodian": scope.ref(_organization_role(payload["case"]["institution"])),
        "section": _sections(scope, payload, found, pdf),
    }
    previous = payload.get("previous")
    if previous:
        data["relatesTo"] = [
            {
                "code": "replaces",
                "targetIdentifier": {"system": PLAN_HASH_SYSTEM, "value": previous["hash"]},
            }
        ]
    return Composition.model_validate(data)


def _sections(
    scope: Scope, payload: dict[str, Any], found: Findings, pdf: bool
) -> list[dict[str, Any]]:
    """The human-readable document: one section per part of the note, each pointing at the
    resources that code it."""
    note, staging = payload["note"], payload["note"]["staging"]
    tnm = " ".join(staging.get("prefix", "") + staging[axis] for axis in "tnm" if axis in staging)
    stage = scope.choice("staging.stage_group", staging["stage_group"])
    system = scope.choice("staging.system", staging["system"])
    parts: list[tuple[str, str, list[str]]] = [
        ("primary_cancer", _ul(_fields(scope, "primary_cancer", note)), [found.condition[0]]),
        ("staging", _p(f"{tnm} {stage} ({system})".strip()), [r for r, _ in found.staging]),
    ]
    if found.ecog:
        parts.append(("ecog", _p(scope.choice("ecog", note["ecog"])), ["ecog"]))
    if found.biomarkers:
        parts.append(
            (
                "biomarkers",
                _ul(_fields(scope, "biomarkers", note)),
                [r for r, _ in found.biomarkers],
            )
        )
    parts.append(("recommendations", _plan_text(scope, note), ["careplan"]))
    parts.append(("rationale", _p(note["rationale"]), []))
    if note.get("dissent"):
        parts.append(("dissent", _p(note["dissent"]), []))
    sections = [_section(scope, scope.label(key), html, roles) for key, html, roles in parts]
    if payload.get("previous"):
        reason = f"Amends version {payload['previous']['version']}: {payload['amendment_reason']}"
        sections.append(_section(scope, "Amendment", _p(reason), []))
    sections.append(_section(scope, "Attendance", _attendance_text(payload), ["encounter"]))
    if pdf:
        sections.append(_section(scope, "Printable version", _p("The plan as PDF."), ["pdf"]))
    return sections


def _fields(scope: Scope, group: str, note: dict[str, Any]) -> list[str]:
    return [
        f"{scope.label(f'{group}.{key}')}: {scope.choice(f'{group}.{key}', value)}"
        for key, value in note[group].items()
    ]


def _plan_text(scope: Scope, note: dict[str, Any]) -> str:
    ranked = [
        scope.choice("recommendations.type", r["type"])
        + (f": {r['detail']}" if r.get("detail") else "")
        + (f" ({r['nct_number']})" if r.get("nct_number") else "")
        for r in note["recommendations"]
    ]
    lines = [f"{scope.label('intent')}: {scope.choice('intent', note['intent'])}"]
    if note.get("no_treatment_reason"):
        lines.append(f"{scope.label('no_treatment_reason')}: {note['no_treatment_reason']}")
    guideline = note.get("guideline")
    if guideline:
        name = scope.choice("guideline.name", guideline.get("name", ""))
        follows = {True: "concordant", False: "not concordant"}.get(guideline.get("concordant"))
        why = guideline.get("discordance_reason")
        words = [name, guideline.get("version", ""), follows or "", why or ""]
        lines.append(f"{scope.label('guideline')}: " + ", ".join(w for w in words if w))
    actions = [
        f"{a['action']} ({a['owner']}, due {a['due']})" for a in note.get("followup_actions", [])
    ]
    follow = _p(scope.label("followup_actions") + ":") + _ul(actions) if actions else ""
    return "<ol>" + "".join(f"<li>{escape(r)}</li>" for r in ranked) + "</ol>" + _ul(lines) + follow


def _attendance_text(payload: dict[str, Any]) -> str:
    session = payload.get("session") or {}
    head = f"{session.get('board', 'Tumor board')}, {session.get('start_at', '')}"
    rows = [
        f"{a['name']}, {_specialty(a.get('specialty'))}, {a['institution']}, {a['role']}:"
        f" {a['joined_at']} to {a.get('left_at') or 'end'}"
        for a in payload.get("attendance", [])
    ]
    quorum = payload.get("quorum") or {}
    missing = ", ".join(_specialty(s) for s in quorum.get("missing", [])) or "none"
    return _p(head) + _ul(rows) + _p(f"Quorum: missing specialties {missing}")


def _patient(scope: Scope, record: PlanRecord) -> Patient:
    patient = record.patient
    if patient is None:  # an external audience: the pseudonymous case number only
        number = record.payload["case"]["number"]
        return Patient.model_validate(
            {"identifier": [{"system": CASE_NUMBER_SYSTEM, "value": number}]}
        )
    home = record.payload["case"]["institution"]
    mrn_type = {"coding": [{"system": _TERMINOLOGY + "v2-0203", "code": "MR"}]}
    assigner = scope.ref(_organization_role(home), record.institution_name)
    return Patient.model_validate(
        {
            "identifier": [
                {"use": "usual", "type": mrn_type, "value": patient.mrn, "assigner": assigner}
            ],
            "name": [{"text": patient.name}],
            "gender": patient.sex,
            "birthDate": patient.birth_date.isoformat(),
        }
    )


def _encounter(scope: Scope, payload: dict[str, Any], home_name: str) -> Encounter:
    session = payload.get("session")
    participation = {"coding": [{"system": _TERMINOLOGY + "v3-ParticipationType", "code": "PART"}]}
    data: dict[str, Any] = {
        "status": "finished" if session else "unknown",
        "class": {"system": _TERMINOLOGY + "v3-ActCode", "code": "VR", "display": "virtual"},
        "type": [{"text": "Tumor board discussion" + (f": {session['board']}" if session else "")}],
        "subject": scope.ref("patient"),
        "participant": [
            {
                "type": [participation | {"text": a["role"]}],
                "period": _period(a["joined_at"], a.get("left_at")),
                "individual": scope.ref(_practitioner_role(a["name"], a["institution"]), a["name"]),
            }
            for a in payload.get("attendance", [])
        ],
        "reasonReference": [scope.ref("condition")],
        "serviceProvider": scope.ref(_organization_role(payload["case"]["institution"]), home_name),
    }
    if session:
        data["period"] = _period(session["start_at"], session.get("end_at"))
    return Encounter.model_validate(data)


def _people(scope: Scope, payload: dict[str, Any], home_name: str) -> list[Entry]:
    """A Practitioner per attendee (and the finalizer), an Organization per institution."""
    signer = payload["finalized_by"]
    specialties: dict[tuple[str, str], list[str]] = {}
    for person in [*payload.get("attendance", []), signer]:
        known = specialties.setdefault((person["name"], person["institution"]), [])
        label = _specialty(person.get("specialty")) if person.get("specialty") else None
        if label and label not in known:
            known.append(label)
    practitioners: list[Entry] = [
        (
            _practitioner_role(name, institution),
            Practitioner.model_validate(
                {"name": [{"text": name}]}
                | ({"qualification": [{"code": {"text": s}} for s in labels]} if labels else {})
            ),
        )
        for (name, institution), labels in specialties.items()
    ]
    home = payload["case"]["institution"]
    codes = dict.fromkeys([home, *(institution for _, institution in specialties)])
    organizations: list[Entry] = [
        (
            _organization_role(code),
            Organization.model_validate(
                {
                    "identifier": [{"system": INSTITUTION_SYSTEM, "value": code}],
                    **({"name": home_name} if code == home else {}),
                }
            ),
        )
        for code in codes
    ]
    return practitioners + organizations


def _provenance(scope: Scope, record: PlanRecord) -> Provenance:
    """The signature of the plan's version: the institution's Ed25519 signature over the
    RFC 8785 bytes of the payload (see server/notes/signature.py). ``data`` holds the raw
    signature bytes; the signed payload is named by its hash (entity ``source``) and the key by
    its kid (extension SIGNING_KEY_EXTENSION); the signed JSON export carries both to verify.
    sigFormat is left out: no MIME type names a bare Ed25519 signature over RFC 8785 bytes, and
    application/jose would claim a JWS it is not; targetFormat says what was signed."""
    payload, signature = record.payload, record.signed["signature"]
    who, org = _finalizer(scope, payload), _organization_ref(scope, payload)
    entities = [
        {"role": "source", "what": _signed_version(record.signed["hash"], payload["version"])}
    ]
    if payload.get("previous"):
        previous = payload["previous"]
        what = _signed_version(previous["hash"], previous["version"])
        entities.append({"role": "revision", "what": what})
    author = {
        "coding": [{"system": _TERMINOLOGY + "provenance-participant-type", "code": "author"}]
    }
    operation = "UPDATE" if payload.get("previous") else "CREATE"
    return Provenance.model_validate(
        {
            "target": [scope.ref("composition"), scope.ref("careplan")],
            "recorded": payload["finalized_at"],
            "activity": {
                "coding": [{"system": _TERMINOLOGY + "v3-DataOperation", "code": operation}]
            },
            "agent": [{"type": author, "who": who, "onBehalfOf": org}],
            "entity": entities,
            "signature": [
                {
                    "extension": [{"url": SIGNING_KEY_EXTENSION, "valueString": signature["kid"]}],
                    "type": [
                        {
                            "system": "urn:iso-astm:E1762-95:2013",
                            "code": "1.2.840.10065.1.12.1.1",
                            "display": "Author's Signature",
                        }
                    ],
                    "when": payload["finalized_at"],
                    "who": who,
                    "onBehalfOf": org,
                    "targetFormat": "application/json",
                    "data": base64.b64encode(from_b64url(signature["value"])).decode("ascii"),
                }
            ],
        }
    )


def _document_reference(scope: Scope, payload: dict[str, Any], pdf: bytes) -> DocumentReference:
    return DocumentReference.model_validate(
        {
            "status": "current",
            "docStatus": "final",
            "type": _DOCUMENT_TYPE,
            "subject": scope.ref("patient"),
            "date": payload["finalized_at"],
            "author": [_finalizer(scope, payload)],
            "description": "Tumor board agreed plan (PDF)",
            "content": [
                {
                    "attachment": {
                        "contentType": "application/pdf",
                        "data": base64.b64encode(pdf).decode("ascii"),
                        "creation": payload["finalized_at"],
                    }
                }
            ],
            "context": {
                "encounter": [scope.ref("encounter")],
                "related": [scope.ref("composition")],
            },
        }
    )


def _signed_version(plan_hash: str, version: int) -> dict[str, Any]:
    identifier = {"system": PLAN_HASH_SYSTEM, "value": plan_hash}
    return {"identifier": identifier, "display": f"Signed agreed plan, version {version}"}


def _finalizer(scope: Scope, payload: dict[str, Any]) -> dict[str, Any]:
    signer = payload["finalized_by"]
    return scope.ref(_practitioner_role(signer["name"], signer["institution"]), signer["name"])


def _organization_ref(scope: Scope, payload: dict[str, Any]) -> dict[str, Any]:
    return scope.ref(_organization_role(payload["finalized_by"]["institution"]))


def _practitioner_role(name: str, institution: str) -> str:
    return f"practitioner/{institution}/{name}"


def _organization_role(code: str) -> str:
    return f"organization/{code}"


def _specialty(specialty: str | None) -> str:
    return (specialty or "no specialty").replace("_", " ").capitalize()


def _period(start: str, end: str | None) -> dict[str, str]:
    return {"start": start, **({"end": end} if end else {})}


def _section(scope: Scope, title: str, html: str, roles: list[str]) -> dict[str, Any]:
    section: dict[str, Any] = {
        "title": title,
        "text": {"status": "generated", "div": f'<div xmlns="{_XHTML}">{html}</div>'},
    }
    if roles:
        section["entry"] = [scope.ref(role) for role in roles]
    return section


def _p(text: str) -> str:
    return "<p>" + escape(text).replace("\n", "<br/>") + "</p>"


def _ul(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>" if items else ""
