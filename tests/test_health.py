from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


async def test_health_reports_database_ok(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "database": "ok"}


async def test_unauthenticated_api_call_gets_401_problem(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/boards")
    assert resp.status == 401
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["status"] == 401 and "token" in body["detail"]


async def test_openapi_lists_every_route(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/api/openapi.json")
    doc = await resp.json()
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    wired = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None
        and (
            r.resource.canonical.startswith(("/api/", "/dicom-web/"))
            or r.resource.canonical == "/metrics"
        )
        and r.method != "HEAD"
    }
    assert wired, "no API routes found"
    assert wired == listed
    login = doc["paths"]["/api/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("LoginIn")


async def test_metrics_are_prometheus_text_without_identifiers(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    await client.post("/api/cases/lookup", json={"mrn": "HZ00012345"}, headers=auth["coordinator"])
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert (
        'eboard_http_requests_total{method="POST",route="/api/cases/lookup",status="200"}' in text
    )
    assert "HZ00012345" not in text
