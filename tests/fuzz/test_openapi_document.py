"""The OpenAPI document declares every answer a route can give, so fuzzers can check them."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient


@pytest.fixture
async def document(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    found: dict[str, Any] = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


async def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(document)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


async def test_every_operation_declares_its_success_schema(document: dict[str, Any]) -> None:
    missing = []
    for method, path, op in _operations(document):
        success = [code for code in op["responses"] if code.startswith("2")]
        assert len(success) == 1, (method, path)
        answer = op["responses"][success[0]]
        if success[0] == "204":
            assert "content" not in answer, (method, path)
            continue
        content = answer.get("content", {})
        if not content or any("schema" not in c for c in content.values()):
            missing.append(f"{method} {path}")
    assert not missing, f"no 2xx schema: {missing}"


async def test_json_answers_are_described_field_by_field(document: dict[str, Any]) -> None:
    """A JSON answer's schema names its fields (an open object only where the domain shapes
    the content: a template, the signed plan, this document)."""
    open_ok = {"get_template", "get_signed_plan", "get_openapi", "export_plan"}
    for method, path, op in _operations(document):
        for code, answer in op["responses"].items():
            media = answer.get("content", {}).get("application/json")
            if not code.startswith("2") or media is None or op["operationId"] in open_ok:
                continue
            schema = _resolve(document, media["schema"])
            assert schema.get("properties"), (method, path)
            assert schema.get("required"), (method, path)


async def test_error_answers_are_declared_where_they_can_happen(document: dict[str, Any]) -> None:
    for method, path, op in _operations(document):
        declared = set(op["responses"])
        authenticated = op["x-roles"] != ["anonymous"]
        assert ({"401", "403"} <= declared) == authenticated or op["operationId"] in {
            "post_login",
            "get_invitation",
            "post_accept",
        }, (method, path)
        if "{" in path:
            assert "404" in declared, (method, path)
        elif "404" in declared:  # an id in the body or query names something that may not exist
            assert "requestBody" in op or "parameters" in op, (method, path)
        has_input = "requestBody" in op or any(p["in"] == "query" for p in op.get("parameters", []))
        if has_input:
            assert "422" in declared, (method, path)
        for code in declared - {c for c in declared if c.startswith("2")}:
            assert op["responses"][code]["content"]["application/problem+json"], (method, code)


async def test_query_parameters_are_declared(document: dict[str, Any]) -> None:
    def query(path: str, method: str) -> dict[str, dict[str, Any]]:
        params = document["paths"][path][method].get("parameters", [])
        return {p["name"]: p for p in params if p["in"] == "query"}

    export = query("/api/cases/{case_id}/plan/export", "get")
    assert export["format"]["required"] is True
    assert set(export["format"]["schema"]["enum"]) == {"pdf", "fhir", "hl7", "json"}
    assert {"language", "audience"} <= set(export)
    assert not export["language"]["required"]
    sessions = query("/api/boards/{board_id}/sessions", "get")
    assert {"from", "to", "tz"} <= set(sessions)
    assert {"from", "to", "board_id", "tz"} <= set(query("/api/records/metrics", "get"))
    assert {"board_id", "state"} <= set(query("/api/cases", "get"))
    assert "purpose" in query("/api/cases/{case_id}/plan/signed", "get")
    assert "tz" in query("/api/boards", "get")


async def test_files_declare_their_media_types(document: dict[str, Any]) -> None:
    def media(path: str, method: str = "get") -> set[str]:
        op = document["paths"][path][method]
        code = next(c for c in op["responses"] if c.startswith("2"))
        return set(op["responses"][code]["content"])

    assert media("/api/cases/{case_id}/plan/export") == {
        "application/pdf",
        "application/fhir+json",
        "x-application/hl7-v2+er7",
        "application/json",
    }
    assert media("/api/exports/{job_id}/file") == {"application/zip"}
    assert media("/api/me/calendar.ics") == {"text/calendar"}
    assert media("/dicom-web/studies/{study}/series/{series}") == {"multipart/related"}
    assert media("/dicom-web/studies") == {"application/dicom+json"}


def test_every_query_parameter_a_handler_reads_is_declared() -> None:
    """A handler reading ``query.get("x")`` or ``q["x"]`` declares x (tz via viewer_tz)."""
    from server.api import (
        auth,
        boards,
        case_imaging,
        cases,
        imaging,
        invitations,
        keys,
        notes,
        people,
        records,
        sessions,
        system,
    )
    from server.imaging import dicomweb

    modules = [auth, boards, case_imaging, cases, imaging, invitations, keys, notes, people]
    modules += [records, sessions, system, dicomweb]
    undeclared = []
    helpers = {
        "_case_list": {"board_id", "state"},
        "_day": {"from", "to"},
        "_int_param": {"limit", "offset"},
    }
    for module in modules:
        for route in module.routes.routes:
            source = inspect.getsource(route.handler)
            read = set(re.findall(r"""(?:query|\bq)(?:\.get\(|\[)["'](\w+)["']""", source))
            if "viewer_tz" in source:
                read.add("tz")
            for helper, names in helpers.items():
                if f"{helper}(" in source:
                    read |= names
            declared = set()
            if route.query is not None:
                declared = {f.alias or n for n, f in route.query.model_fields.items()}
            if read - declared:
                undeclared.append(f"{route.method} {route.path}: {sorted(read - declared)}")
    assert not undeclared, undeclared
