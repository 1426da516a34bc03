"""The OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from .routing import SAFE_METHODS, Route, RouteTable

__all__ = ["ROUTES", "error_statuses", "openapi_document"]

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


_BYTES = {"type": "string", "format": "binary"}
_DESCRIPTIONS = {
    400: "the request is malformed",
    401: "no valid token was sent",
    403: "the caller's role or institution may not do this",
    404: "what the path names does not exist or is not visible to the caller",
    406: "the answer cannot be sent in a media type the Accept header allows",
    409: "the thing is not in a state that allows this",
    413: "the body or upload is over its limit",
    415: "the body is not of the media type the route reads",
    422: "a parameter or the body is invalid; errors name each field",
    429: "too many requests; Retry-After says when to try again",
    502: "the hospital system behind this did not answer as expected",
    503: "a service the route needs is unavailable",
}


def _schema_of(
    model: type[BaseModel], schemas: dict[str, Any], mode: JsonSchemaMode
) -> dict[str, Any]:
    """A $ref to ``model`` in components (its nested models beside it)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if route.query is not None:
        schema = route.query.model_json_schema(by_alias=True)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            prop = {k: v for k, v in prop.items() if k != "title"}
            description = prop.pop("description", None)
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if description:
                param["description"] = description
            params.append(param)
    return params


def _request_body(route: Route, schemas: dict[str, Any]) -> dict[str, Any] | None:
    if route.body is not None:
        ref = _schema_of(route.body, schemas, "validation")
        return {"required": True, "content": {"application/json": {"schema": ref}}}
    if route.raw_body:
        return {
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
    return None


def _success(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    if route.status == 204:
        return {"description": "done; no content"}
    media_types = route.media_types or ("application/json",)
    if route.response is not None:
        ref = _schema_of(route.response, schemas, "serialization")
        content = {media: {"schema": ref} for media in media_types}
    else:
        # A file: a JSON one (a FHIR Bundle, a signed plan) is an object, the rest bytes.
        content = {
            media: {"schema": {"type": "object"} if _is_json(media) else _BYTES}
            for media in media_types
        }
    return {"description": "success", "content": content}


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def error_statuses(route: Route) -> list[int]:
    """The error statuses a route can answer: those its shape implies, and its own."""
    statuses = set(route.answers)
    if not route.public:
        statuses |= {401, 403}
    if route.same_site:
        statuses.add(403)
    if "{" in route.path:
        statuses.add(404)
    if route.body is not None or route.raw_body or route.query is not None:
        statuses.add(422)
    if route.method not in SAFE_METHODS:
        statuses.add(403)  # a page of another site sent the browser here
    if route.body is not None:
        statuses |= {413, 415}  # JSON bodies are capped and must say they are JSON
    if route.raw_body:
        statuses |= {400, 413, 415, 429}  # malformed parts, limits, uploads in flight per user
    return sorted(statuses)


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "tags": [route.tag] if route.tag else [],
        "x-roles": sorted(r.value for r in route.roles) or ["anonymous"],
    }
    params = _parameters(route)
    if params:
        op["parameters"] = params
    body = _request_body(route, schemas)
    if body is not None:
        op["requestBody"] = body
    responses: dict[str, Any] = {str(route.status): _success(route, schemas)}
    for code in error_statuses(route):
        responses[str(code)] = {
            "description": _DESCRIPTIONS.get(code, "problem"),
            "content": {"application/problem+json": {"schema": _PROBLEM}},
        }
    if not route.public:
        op["security"] = [{"bearer": []}, {"cookie": []}]
    op["responses"] = responses
    return op


def openapi_document(app: web.Application) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    routes = app[ROUTES].routes
    names = Counter(route.handler.__name__ for route in routes)
    for route in routes:
        op = _operation(route, schemas)
        if names[route.handler.__name__] > 1:  # operation ids are unique in a document
            op["operationId"] = f"{route.tag}_{route.handler.__name__}"
        paths.setdefault(route.path, {})[route.method.lower()] = op
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
