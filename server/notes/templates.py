"""TemplateSet: the consensus-note templates (JSON Schema 2020-12), bundled, shaped and enforced.

A template is the one description of a note: the browser renders the form from its bundle, the
CRDT document takes its shape from it, and finalize validates the materialised note against it.
The loader therefore refuses any schema outside the few shapes those three understand.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from ..errors import ConfigError, FieldError, NotFound

if TYPE_CHECKING:  # referencing does not export the class its Registry.resolver() returns
    from referencing._core import Resolver

__all__ = ["TEMPLATES_DIR", "Field", "TemplateSet"]

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "schemas" / "templates"

COMMON = "common"
FALLBACK = "generic"
LOCALES = ("en", "zh-CN")
_DRAFT = "https://json-schema.org/draft/2020-12/schema"

# Keywords a $ref's siblings may add or restate: they describe a field, they do not constrain it.
_ANNOTATIONS = {"title", "description", "$comment", "examples", "default"}
_FORBIDDEN = ("anyOf", "allOf", "not", "else", "patternProperties", "prefixItems", "$ref")
_MAX_REF_DEPTH = 16

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a group of fields",
    "array": "a list",
}


@dataclass(frozen=True)
class Field:
    """One node of a template's shape: what kind of CRDT value holds it."""

    kind: Literal["map", "list", "text", "value"]
    children: Mapping[str, Field] = field(default_factory=dict)
    item: Field | None = None
    # For "list": the template's maxItems (the note's replica bounds lists by it while the note
    # is edited, not only when it is finalized).
    max_items: int | None = None


@dataclass(frozen=True)
class _Template:
    id: str
    bundle: dict[str, Any]
    shape: Field
    validator: Draft202012Validator


class _Broken(Exception):
    """A template breaks a rule; the loader adds the file's name."""


class TemplateSet:
    """Every consensus-note template of a folder, loaded and checked once at start."""

    def __init__(self, folder: Path = TEMPLATES_DIR) -> None:
        docs = {path.stem: _read(path) for path in sorted(folder.glob("*.json"))}
        if COMMON not in docs or FALLBACK not in docs:
            raise ConfigError(f"{folder} must hold {COMMON}.json and {FALLBACK}.json")
        registry: Registry[Any] = Registry().with_resources(
            (doc["$id"], DRAFT202012.create_resource(doc)) for doc in docs.values()
        )
        self._templates: dict[str, _Template] = {}
        self._sites: dict[str, str] = {}
        for name, doc in docs.items():
            if name == COMMON:
                continue
            try:
                self._templates[name] = _load(name, doc, registry)
                self._claim_sites(name, doc["x-tumor-sites"])
            except _Broken as error:
                raise ConfigError(f"template {folder / (name + '.json')}: {error}") from None

    def ids(self) -> list[str]:
        """The template ids, sorted (``common`` holds shared parts and is not one)."""
        return sorted(self._templates)

    def summary(self) -> list[dict[str, Any]]:
        """What a board's settings offer: id, bilingual label and the tumor sites served."""
        return [
            {
                "id": t.id,
                "label": dict(t.bundle["x-label"]),
                "tumor_sites": list(t.bundle["x-tumor-sites"]),
            }
            for t in sorted(self._templates.values(), key=lambda t: t.id)
        ]

    def for_site(self, tumor_site: str) -> str:
        """The template serving a board's tumor site; the generic one when none claims it."""
        return self._sites.get(tumor_site.strip().lower(), FALLBACK)

    def bundle(self, template_id: str) -> dict[str, Any]:
        """The template with every $ref inlined: one self-contained schema for the browser."""
        return copy.deepcopy(self._get(template_id).bundle)

    def shape(self, template_id: str) -> Field:
        """The note's shape (root kind ``map``), from which its CRDT document is built."""
        return self._get(template_id).shape

    def validate(self, template_id: str, note: Any) -> list[FieldError]:
        """Every way a materialised note breaks its template, at dot paths, sorted."""
        errors = list(self._get(template_id).validator.iter_errors(note))
        # A value of the wrong type also misses the value set and the limits: say it once.
        mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
        found: set[FieldError] = set()
        for error in errors:
            if error.validator == "type" or tuple(error.absolute_path) not in mistyped:
                found.update(_field_errors(error))
        return sorted(found, key=lambda e: (_path_key(e.field), e.message))

    def label(self, template_id: str, path: str, locale: str) -> str:
        """A field's label by dot path (list indexes skipped); "" names the template itself.

        A path the template does not know (an extra property a validation error points at) is
        named by its last segment, so error messages can always be written.
        """
        node = self._node(template_id, path)
        if node is None:
            return path.rsplit(".", 1)[-1]
        return _pick(node["x-label"], locale)

    def choice_label(self, template_id: str, path: str, value: Any, locale: str) -> str:
        """The label of a coded value of a field (``intent``, 373808002 → "Curative")."""
        node = self._node(template_id, path)
        for choice in (node or {}).get("oneOf", []):
            if choice["const"] == value and type(choice["const"]) is type(value):
                return _pick(choice["x-label"], locale)
        return str(value)

    def _get(self, template_id: str) -> _Template:
        template = self._templates.get(template_id)
        if template is None:
            raise NotFound.on("template", f"no template {template_id!r}")
        return template

    def _node(self, template_id: str, path: str) -> dict[str, Any] | None:
        node = self._get(template_id).bundle
        for segment in filter(None, path.split(".")):
            if segment.isdigit():
                continue
            if node.get("type") == "array":
                node = node["items"]
            child = node.get("properties", {}).get(segment)
            if child is None:
                return None
            node = child
        return node

    def _claim_sites(self, name: str, sites: Iterable[str]) -> None:
        for site in sites:
            key = site.strip().lower()
            if key in self._sites:
                raise _Broken(f"tumor site {site!r} is already served by {self._sites[key]!r}")
            self._sites[key] = name


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"template {path} cannot be read: {error}") from None
    if not isinstance(doc, dict) or not str(doc.get("$id", "")).endswith(f"/{path.name}"):
        raise ConfigError(f"template {path} must be an object whose $id ends in /{path.name}")
    if doc.get("$schema") != _DRAFT:
        raise ConfigError(f"template {path} must declare $schema {_DRAFT}")
    try:
        Draft202012Validator.check_schema(doc)
    except SchemaError as error:
        raise ConfigError(f"template {path}: not a valid JSON Schema: {error.message}") from None
    return doc


def _load(name: str, doc: dict[str, Any], registry: Registry[Any]) -> _Template:
    for key in ("title", "x-label", "x-tumor-sites"):
        if key not in doc:
            raise _Broken(f"{key} is missing")
    sites = doc["x-tumor-sites"]
    if not isinstance(sites, list) or not all(isinstance(s, str) for s in sites):
        raise _Broken("x-tumor-sites must be a list of tumor sites")
    try:
        bundle = _inline(doc, registry.resolver(base_uri=doc["$id"]), 0)
    except Unresolvable as error:
        raise _Broken(f"$ref cannot be resolved: {error}") from None
    bundle = {"$schema": doc["$schema"], "$id": doc["$id"], **bundle}
    _check_label(bundle, "the template")
    shape = _shape(bundle, "")
    if shape.kind != "map":
        raise _Broken("the root must be an object")
    return _Template(
        name, bundle, shape, Draft202012Validator(bundle, format_checker=FormatChecker())
    )


def _inline(node: Any, resolver: Resolver[Any], depth: int) -> Any:
    """The schema with each $ref replaced by (a copy of) what it points at."""
    if isinstance(node, list):
        return [_inline(item, resolver, depth) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" not in node:
        return {
            key: _inline(value, resolver, depth)
            for key, value in node.items()
            if key not in ("$defs", "$id", "$schema")
        }
    if depth >= _MAX_REF_DEPTH:
        raise _Broken(f"$ref {node['$ref']!r} nests too deeply (a cycle?)")
    resolved = resolver.lookup(node["$ref"])
    target = _inline(resolved.contents, resolved.resolver, depth + 1)
    siblings = {k: _inline(v, resolver, depth) for k, v in node.items() if k != "$ref"}
    # Merging is only the same schema as "$ref plus siblings" when no constraint is restated.
    for key, value in siblings.items():
        if key in target and target[key] != value and not _is_annotation(key):
            raise _Broken(f"{key!r} next to $ref {node['$ref']!r} contradicts its target")
    return {**target, **siblings}


def _is_annotation(key: str) -> bool:
    return key in _ANNOTATIONS or key.startswith("x-")


def _shape(schema: dict[str, Any], where: str) -> Field:
    """The field kind of a bundled schema node; anything outside the rules is refused."""
    for key in _FORBIDDEN:
        if key in schema:
            raise _Broken(f"{where or 'the root'}: {key} is not allowed in a note template")
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict) or not properties:
            raise _Broken(f"{where or 'the root'}: an object needs properties")
        if schema.get("additionalProperties") is not False:
            raise _Broken(f"{where or 'the root'}: additionalProperties must be false")
        children: dict[str, Field] = {}
        for name, child in properties.items():
            path = f"{where}.{name}".lstrip(".")
            _check_label(child, path)
            children[name] = _shape(child, path)
        return Field("map", children)
    if "if" in schema or "then" in schema:
        raise _Broken(f"{where}: if/then only belongs on an object")
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict) or items.get("type") != "object":
            raise _Broken(f"{where}: the items of a list must be objects")
        limit = schema.get("maxItems")
        return Field(
            "list",
            item=_shape(items, f"{where}.items"),
            max_items=limit if isinstance(limit, int) else None,
        )
    if "oneOf" in schema or "enum" in schema:
        if kind not in ("string", "integer"):
            raise _Broken(f"{where}: a coded value must be a string or an integer")
        _check_choices(schema, where)
        return Field("value")
    if kind == "string":
        return Field("value") if schema.get("format") == "date" else Field("text")
    if kind in ("integer", "number", "boolean"):
        return Field("value")
    raise _Broken(f"{where}: type {kind!r} is not one of the kinds a note can hold")


def _check_choices(schema: dict[str, Any], where: str) -> None:
    if "enum" in schema:
        raise _Broken(f"{where}: coded values are a oneOf of labelled consts, not an enum")
    choices = schema["oneOf"]
    if not isinstance(choices, list) or not choices:
        raise _Broken(f"{where}: oneOf must list the choices")
    for choice in choices:
        if not isinstance(choice, dict) or "const" not in choice:
            raise _Broken(f"{where}: every choice is a const")
        if set(choice) - {"const", "x-label", "description"}:
            raise _Broken(f"{where}: choice {choice['const']!r} has more than a const and labels")
        _check_label(choice, f"{where} = {choice['const']!r}")


def _check_label(node: Any, where: str) -> None:
    labels = node.get("x-label") if isinstance(node, dict) else None
    if not isinstance(labels, dict) or not all(
        isinstance(labels.get(locale), str) and labels[locale].strip() for locale in LOCALES
    ):
        raise _Broken(f"{where}: x-label needs {' and '.join(LOCALES)}")


def _pick(labels: Mapping[str, str], locale: str) -> str:
    return labels.get(locale) or labels["en"]


def _field_errors(error: ValidationError) -> list[FieldError]:
    """One validation error as field errors; a missing or extra property at its own path."""
    base = [str(p) for p in error.absolute_path]
    instance, rule = error.instance, error.validator
    if (
        rule == "required"
        and isinstance(instance, dict)
        and isinstance(error.validator_value, list)
    ):
        return [
            FieldError(".".join([*base, name]), "is required")
            for name in error.validator_value
            if name not in instance
        ]
    if rule == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        return [
            FieldError(".".join([*base, str(name)]), "is not a field of this template")
            for name in instance
            if name not in known
        ]
    return [FieldError(".".join(base) or "note", _message(error))]


def _message(error: ValidationError) -> str:
    # Never echo the offending value: a note is patient data, and a long text is noise.
    rule, limit = error.validator, error.validator_value
    if rule == "type":
        kinds = (
            [limit] if isinstance(limit, str) else list(limit) if isinstance(limit, list) else []
        )
        return "must be " + " or ".join(_TYPE_WORDS.get(k, k) for k in kinds)
    if rule in ("oneOf", "enum", "const"):
        return "is not in the value set"
    if rule == "pattern":
        return f"must match the pattern {limit}"
    if rule == "format":
        return "must be a date (YYYY-MM-DD)" if limit == "date" else f"must be a valid {limit}"
    if rule == "minItems":
        return f"needs at least {limit} {'entry' if limit == 1 else 'entries'}"
    if rule == "maxItems":
        return f"has more than {limit} entries"
    if rule == "maxLength":
        return f"is longer than {limit} characters"
    if rule == "minLength":
        return f"is shorter than {limit} characters"
    if rule in ("minimum", "exclusiveMinimum"):
        return f"must be at least {limit}" if rule == "minimum" else f"must be more than {limit}"
    if rule in ("maximum", "exclusiveMaximum"):
        return f"must be at most {limit}" if rule == "maximum" else f"must be less than {limit}"
    return f"breaks the template's {rule} rule"


def _path_key(path: str) -> tuple[tuple[int, int, str], ...]:
    # recommendations.2 sorts before recommendations.10.
    return tuple(
        (0, int(s), "") if s.isascii() and s.isdigit() else (1, 0, s) for s in path.split(".")
    )
