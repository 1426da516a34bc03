"""UID: the DICOM unique identifier's form (PS3.5 §9.1, value representation UI), checked where a
file is parsed, so no UID that reaches the store or the database can be anything but a UID."""

from __future__ import annotations

import re

from ..errors import Invalid

__all__ = ["MAX_LENGTH", "check_uid", "uid_problem"]

MAX_LENGTH = 64
# Components of digits, separated by single dots; a component starts with 1-9 unless it is 0.
_FORM = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a UID, or None if it is one."""
    if not value:
        return "is empty"
    if len(value) > MAX_LENGTH:
        return f"is {len(value)} characters long, more than {MAX_LENGTH}"
    if _FORM.fullmatch(value) is None:
        if any(c not in "0123456789." for c in value):
            return "may hold only digits and dots"
        if "" in value.split("."):
            return "has an empty component"
        return "has a component with a leading zero"
    return None


def check_uid(value: object, attribute: str, where: str) -> str:
    """``value`` as a UID string, or Invalid (on the field ``file``) naming ``attribute`` and
    the file ``where`` it came from."""
    text = "" if value is None else str(value)
    problem = uid_problem(text)
    if problem is not None:
        shown = text if len(text) <= 80 else f"{text[:80]}…"
        raise Invalid.on("file", f"{where}: {attribute} {shown!r} {problem}")
    return text
