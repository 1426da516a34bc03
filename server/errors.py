"""The server's error catalogue: raised in the domain, turned into responses at the edges."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "EboardError",
    "FieldError",
    "Unauthenticated",
    "Forbidden",
    "NotFound",
    "Invalid",
    "Conflict",
    "TooLarge",
    "UnsupportedMediaType",
]


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one sentence naming it."""


@dataclass(frozen=True)
class FieldError:
    """One offending field and why."""

    field: str
    message: str


class EboardError(Exception):
    """Base of every error a client may cause; carries an HTTP status and field errors."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors: list[FieldError] = errors or []

    @classmethod
    def on(cls, field_name: str, message: str) -> EboardError:
        """An error about one field, whose detail is the field's message."""
        return cls(f"{field_name}: {message}", [FieldError(field_name, message)])


class Unauthenticated(EboardError):
    status = 401
    title = "Not authenticated"


class Forbidden(EboardError):
    status = 403
    title = "Forbidden"


class NotFound(EboardError):
    status = 404
    title = "Not found"


class Conflict(EboardError):
    status = 409
    title = "Conflict"


class TooLarge(EboardError):
    status = 413
    title = "Payload too large"


class Invalid(EboardError):
    status = 422
    title = "Invalid input"


class TooMany(EboardError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after  # seconds, for the Retry-After header


class Unavailable(EboardError):
    status = 503
    title = "Service unavailable"


class UnsupportedMediaType(EboardError):
    status = 415
    title = "Unsupported media type"
