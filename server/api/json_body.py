"""A request's JSON body, read within bounds: size, nesting depth, number range, no NaN.

Python's parser recurses once per level (a RecursionError near 1,000 levels) and takes any
integer, however long; SQLite stores integers up to 2^63 and browsers compute exactly up to
2^53. Each bound is refused with a 422 naming where in the body it was broken.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import FieldError, Invalid, TooLarge

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NUMBER", "load"]

# The largest request body is a case summary of 20,000 characters; 1 MiB leaves room to spare
# and bounds what a hostile body costs the event loop to check (about 0.2 s at worst).
MAX_BYTES = 1024 * 1024

# No request schema nests deeper than a handful of levels; this leaves room to spare.
MAX_DEPTH = 32
# The largest integer a browser's JavaScript holds exactly, and more than any id or count here.
MAX_NUMBER = 2**53

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def load(raw: bytes) -> Any:
    """The parsed body (``None`` when empty); ``Invalid`` on ``body`` or the offending field."""
    if not raw:
        return None
    if len(raw) > MAX_BYTES:
        raise TooLarge.on("body", f"a JSON body is at most {MAX_BYTES} bytes, not {len(raw)}")
    if _too_deep(raw):
        raise Invalid.on("body", f"is nested deeper than {MAX_DEPTH} levels")
    big: list[str] = []  # numbers past the bound, noted by the parser as it meets them

    def parse_int(text: str) -> int:
        value = int(text)
        if abs(value) > MAX_NUMBER:
            big.append(text)
        return value

    def parse_float(text: str) -> float:
        value = float(text)
        if not abs(value) <= MAX_NUMBER:
            big.append(text)
        return value

    try:
        data = json.loads(
            raw, parse_constant=_no_constant, parse_int=parse_int, parse_float=parse_float
        )
    except RecursionError as exc:  # unbalanced brackets the depth check left to the parser
        raise Invalid.on("body", f"is nested deeper than {MAX_DEPTH} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid.on("body", f"is not valid JSON ({exc})") from exc
    if big:  # only then is the body walked, to name where the number is
        _check_numbers(data)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_deep(raw: bytes) -> bool:
    """Whether the brackets outside strings nest deeper than ``MAX_DEPTH``.

    Each pass removes the innermost pairs, in C over the whole body: a body that empties
    within ``MAX_DEPTH`` passes is shallow enough; one that stops shrinking is not
    balanced, which the parser then reports.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):
        if not brackets:
            return False
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):
            return False
        brackets = shorter
    return bool(brackets)


def _check_numbers(data: Any) -> None:
    """Refuse any number beyond ±``MAX_NUMBER``, naming where it is (``body.a.0.b``)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not abs(value) <= MAX_NUMBER:
                field = path or "body"
                message = f"{_show(value)} is beyond ±2^53"
                raise Invalid(f"{field}: {message}", [FieldError(field, message)])


def _show(value: int | float) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:20]}…"
