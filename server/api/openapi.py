"""The OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .routing import Route, RouteTable

__all__ = ["ROUTES", "openapi_document"]

ROUTES = web.AppKey("routes", RouteTable)

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details; errors name each offending field.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "tags": [route.tag] if route.tag else [],
        "x-roles": sorted(r.value for r in route.roles) or ["anonymous"],
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        schema = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[route.body.__name__] = schema
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}
                }
            },
        }
    elif route.raw_body:
        op["requestBody"] = {
            "required": True,
            "content": {
                route.raw_body: {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    problem = {
        "description": "problem",
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }
    responses: dict[str, Any] = {str(route.status): {"description": "success"}}
    for code in ("400", "404", "409", "422"):
        responses[code] = problem
    if not route.public:
        op["security"] = [{"bearer": []}, {"cookie": []}]
        responses["401"] = problem
        responses["403"] = problem
    op["responses"] = responses
    return op


def openapi_document(app: web.Application) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in app[ROUTES].routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eBoard",
            "version": "0.1.0",
            "description": "Cross-border tumor boards: scheduling, cases, live sessions.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "eboard_token"},
            },
        },
    }
