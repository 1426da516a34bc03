"""EventContract: the socket.io wire contract, loaded from schemas/events/*.json and enforced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from .errors import FieldError, Invalid

__all__ = ["EventContract", "SCHEMAS_DIR"]

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "events"


class EventContract:
    """One validator per event; ``check`` raises ``Invalid`` naming the offending field."""

    def __init__(self, folder: Path = SCHEMAS_DIR) -> None:
        docs = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
        # Shared definitions (the view state) live one level up and are referenced by $id.
        shared = [json.loads(p.read_text()) for p in sorted(folder.parent.glob("*.json"))]
        registry: Registry[Any] = Registry().with_resources(
            (f"{name}.json", Resource.from_contents(doc)) for name, doc in docs.items()
        )
        registry = registry.with_resources(
            (doc["$id"], Resource.from_contents(doc)) for doc in [*docs.values(), *shared]
        )
        self._validators = {
            name: Draft202012Validator(doc, registry=registry) for name, doc in docs.items()
        }
        self.directions = {name: doc.get("x-direction", "") for name, doc in docs.items()}

    def inbound(self) -> list[str]:
        return [n for n, d in self.directions.items() if d == "client-to-server"]

    def check(self, event: str, data: Any) -> None:
        validator = self._validators.get(event)
        if validator is None:
            raise Invalid.on("event", f"unknown event {event!r}")
        error: ValidationError | None = next(iter(validator.iter_errors(data)), None)
        if error is None:
            return
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = str(error.message).split("'")[1] if "'" in error.message else ""
            path = f"{path}.{missing}".strip(".")
        elif error.validator == "additionalProperties":
            extra = str(error.message).split("'")[1] if "'" in error.message else ""
            path = f"{path}.{extra}".strip(".")
        field = path or "data"
        message = _message(error)
        raise Invalid(f"{event}: {field}: {message}", [FieldError(field, message)])


def _message(error: ValidationError) -> str:
    # Never echo a long value back (a chat flood, an SDP): say what the limit is instead.
    if error.validator == "maxLength":
        return f"is longer than {error.validator_value} characters"
    if error.validator == "pattern":
        encoding = error.schema.get("contentEncoding") if isinstance(error.schema, dict) else None
        return f"is not {encoding}" if encoding else f"does not match {error.validator_value}"
    if error.validator == "minLength":
        return f"is shorter than {error.validator_value} characters"
    text = str(error.message)
    return text if len(text) <= 200 else text[:200] + "…"
