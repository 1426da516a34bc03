"""The signed agreed-plan format: canonical payloads, signed versions, export files, checks.

Pure functions, no files and no database, so ``python -m server verify`` runs them offline.
A signed version is ``{"payload", "hash", "signature"}``: the hash and the Ed25519 signature are
both over the RFC 8785 (JCS) bytes of the payload, and each amendment's payload names the
previous version's hash. An export file is the JCS bytes of ``{"format", "case", "keys",
"versions"}``, with the public key (JWK) of every kid its versions use.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import FieldError, Invalid
from ..signing import b64url, from_b64url, raw_public, read_jwk

__all__ = [
    "PLAN_FORMAT",
    "FILE_FORMAT",
    "Report",
    "Signer",
    "canonical",
    "digest",
    "sign_version",
    "export_file",
    "verify_file",
    "verify_version",
]

PLAN_FORMAT = "eboard-agreed-plan/1"
FILE_FORMAT = "eboard-signed-plans/1"
ALG = "Ed25519"

# (institution's data to sign) -> (kid, 64-byte signature); SigningKeys.sign, bound to a code.
Signer = Callable[[bytes], tuple[str, bytes]]

_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_KID = re.compile(r"(.+)-[1-9][0-9]*")
_VERSION_FIELDS = {"payload", "hash", "signature"}
_SIGNATURE_FIELDS = {"alg", "kid", "value"}
_FILE_FIELDS = {"format", "case", "keys", "versions"}
_JWK_FIELDS = {"kty", "crv", "x", "kid", "use", "alg", "institution"}


@dataclass(frozen=True)
class Report:
    """The outcome of checking a signed file: ``ok`` when ``problems`` is empty."""

    ok: bool
    problems: list[str]
    versions: int
    keys_source: str  # "trusted" (given keys) or "file" (the file's own keys)
    case: str | None = None
    kids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    chained: bool = True  # False for a single signed version: no chain to check


def canonical(obj: object) -> bytes:
    """The RFC 8785 (JCS) bytes of a JSON value."""
    return rfc8785.dumps(obj)  # type: ignore[arg-type]


def digest(payload: Mapping[str, Any]) -> str:
    return _sha256(canonical(dict(payload)))


def sign_version(payload: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """One signed version of an agreed plan; Invalid if the payload's own fields are wrong
    (format, case, version, previous, amendment reason)."""
    problems: list[tuple[str, str]] = []
    _check_payload(payload, "payload", problems)
    try:
        data = canonical(dict(payload))
    except rfc8785.CanonicalizationError as exc:
        problems.append(("payload", f"cannot be put in RFC 8785 canonical form ({exc})"))
    if problems:
        errors = [FieldError(where, message) for where, message in problems]
        raise Invalid(f"{problems[0][0]}: {problems[0][1]}", errors)
    kid, signature = signer(data)
    return {
        "payload": dict(payload),
        "hash": _sha256(data),
        "signature": {"alg": ALG, "kid": kid, "value": b64url(signature)},
    }


def export_file(case_number: str, versions: list[dict[str, Any]], jwks: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a case's export file, holding the JWK of every kid used."""
    published = {k["kid"]: k for k in jwks["keys"]}
    keys = []
    for kid in _kids(versions):
        if kid not in published:
            raise Invalid.on("keys", f"no public key {kid} to put in the export of {case_number}")
        keys.append(published[kid])
    return canonical(
        {"format": FILE_FORMAT, "case": case_number, "keys": keys, "versions": versions}
    )


def verify_version(signed: Mapping[str, Any], key: Ed25519PublicKey | None) -> list[str]:
    """What is wrong with one signed version (its fields, hash and signature by key)."""
    problems: list[tuple[str, str]] = []
    kid = _kid(signed)
    keys = {kid: key} if kid is not None and key is not None else {}
    _check_version(signed, "", keys, "is not a known key", problems)
    return [_line(p) for p in problems]


def verify_file(data: bytes, trusted: Mapping[str, Ed25519PublicKey] | None = None) -> Report:
    """Check an export file (or a single signed version): canonical form, structure, each
    version's hash and signature, and the hash chain of amendments."""
    source = "trusted" if trusted is not None else "file"
    problems: list[tuple[str, str]] = []
    parsed = _parse(data, problems)
    if parsed is _UNREADABLE:
        return _report(problems, 0, source)
    if isinstance(parsed, dict) and "payload" in parsed and "versions" not in parsed:
        unknown = (
            "is not among the trusted keys"
            if trusted is not None
            else "is unknown: a single version carries no keys, so trusted keys must be given"
        )
        _check_version(parsed, "", trusted or {}, unknown, problems)
        case = _case_number(parsed.get("payload"))
        note = "a single signed version: its hash and signature were checked, there is no chain"
        return _report(problems, 1, source, case, _kids([parsed]), [note], chained=False)
    _check_file(parsed, trusted, problems)
    versions = parsed.get("versions") if isinstance(parsed, dict) else None
    count = len(versions) if isinstance(versions, list) else 0
    case = parsed.get("case") if isinstance(parsed, dict) else None
    kids = _kids(versions) if isinstance(versions, list) else []
    return _report(problems, count, source, case if isinstance(case, str) else None, kids)


def _report(
    problems: list[tuple[str, str]],
    versions: int,
    source: str,
    case: str | None = None,
    kids: list[str] | None = None,
    notes: list[str] | None = None,
    *,
    chained: bool = True,
) -> Report:
    return Report(
        ok=not problems,
        problems=[_line(p) for p in problems],
        versions=versions,
        keys_source=source,
        case=case,
        kids=kids or [],
        notes=notes or [],
        chained=chained,
    )


_UNREADABLE = object()


def _parse(data: bytes, problems: list[tuple[str, str]]) -> Any:
    """The JSON value of data, after checking it is UTF-8, JSON and in canonical form;
    _UNREADABLE if it is not JSON at all."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(("file", f"not valid UTF-8 (byte {exc.start})"))
        return _UNREADABLE
    try:
        parsed = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        problems.append(("file", f"not valid JSON (line {exc.lineno}, column {exc.colno})"))
        return _UNREADABLE
    except ValueError as exc:  # a repeated name, NaN or Infinity, an integer too long to read
        problems.append(("file", f"not valid JSON for signing ({exc})"))
        return _UNREADABLE
    except RecursionError:
        problems.append(("file", "not valid JSON for signing (nested too deeply)"))
        return _UNREADABLE
    try:
        again = canonical(parsed)
    except rfc8785.CanonicalizationError as exc:
        problems.append(("file", f"cannot be put in RFC 8785 canonical form ({exc})"))
        return _UNREADABLE
    if again != data:
        at = next((i for i, (a, b) in enumerate(zip(again, data, strict=False)) if a != b), None)
        at = min(len(again), len(data)) if at is None else at
        problems.append(("file", f"not in RFC 8785 canonical form (byte {at} differs)"))
    return parsed


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError(f"the name {name!r} appears twice in one object")
        obj[name] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_file(
    parsed: Any, trusted: Mapping[str, Ed25519PublicKey] | None, problems: list[tuple[str, str]]
) -> None:
    if not isinstance(parsed, dict):
        problems.append(("file", "is not a JSON object"))
        return
    _check_fields(parsed, _FILE_FIELDS, "file", problems)
    if parsed.get("format") != FILE_FORMAT:
        problems.append(("format", f"is {parsed.get('format')!r}, not {FILE_FORMAT!r}"))
    case = parsed.get("case")
    if not isinstance(case, str) or not case:
        problems.append(("case", "must be the case number"))
    versions = parsed.get("versions")
    if not isinstance(versions, list) or not versions:
        problems.append(("versions", "must be a non-empty list of signed versions"))
        versions = []
    file_keys = _file_keys(parsed.get("keys"), trusted, problems)
    used = _kids(versions)
    for i, kid in enumerate(file_keys):
        if kid not in used:
            problems.append((f"keys[{i}]", f"key {kid} is not used by any version"))
    if trusted is not None:
        for kid in used:
            if kid not in file_keys:
                problems.append(("keys", f"does not hold key {kid}, which a version uses"))
    keys, unknown = (
        (file_keys, "is not among the file's keys")
        if trusted is None
        else (trusted, "is not among the trusted keys")
    )
    digests: list[str | None] = []
    for i, signed in enumerate(versions):
        where = f"versions[{i}]"
        digests.append(_check_version(signed, where, keys, unknown, problems))
        if isinstance(signed, dict) and isinstance(signed.get("payload"), dict):
            _check_link(signed["payload"], i, where, case, versions, digests, problems)


def _file_keys(
    entries: Any, trusted: Mapping[str, Ed25519PublicKey] | None, problems: list[tuple[str, str]]
) -> dict[str, Ed25519PublicKey]:
    """The file's own keys by kid, each checked (and compared with the trusted one if given)."""
    if not isinstance(entries, list):
        problems.append(("keys", "must be a list of JWKs"))
        return {}
    found: dict[str, Ed25519PublicKey] = {}
    for i, entry in enumerate(entries):
        where = f"keys[{i}]"
        try:
            kid, key = read_jwk(entry)
        except ValueError as exc:
            problems.append((where, str(exc)))
            continue
        _check_fields(entry, _JWK_FIELDS, where, problems)
        if entry.get("use") != "sig" or entry.get("alg") != "EdDSA":
            problems.append((where, f"key {kid} must have use sig and alg EdDSA"))
        # A kid is "<institution>-<n>", so the institution field has one right value.
        named = _KID.fullmatch(kid)
        if named is None or entry.get("institution") != named[1]:
            problems.append((where, f"key {kid} must name its institution as in its kid"))
        if kid in found:
            problems.append((where, f"key {kid} appears twice"))
        found[kid] = key
        if trusted is not None:
            if kid not in trusted:
                problems.append((where, f"key {kid} is not a trusted key"))
            elif raw_public(trusted[kid]) != raw_public(key):
                problems.append((where, f"key {kid} differs from the trusted key {kid}"))
    return found


def _check_version(
    signed: Any,
    where: str,
    keys: Mapping[str, Ed25519PublicKey],
    unknown: str,
    problems: list[tuple[str, str]],
) -> str | None:
    """Check one signed version; returns the digest of its payload, if it has one."""
    if not isinstance(signed, Mapping):
        problems.append((where or "version", "is not a JSON object"))
        return None
    _check_fields(signed, _VERSION_FIELDS, where or "version", problems)
    payload = signed.get("payload")
    computed: str | None = None
    if not isinstance(payload, Mapping):
        problems.append((_at(where, "payload"), "is not a JSON object"))
    else:
        _check_payload(payload, _at(where, "payload"), problems)
        try:
            data = canonical(dict(payload))
        except rfc8785.CanonicalizationError as exc:
            problems.append((_at(where, "payload"), f"cannot be canonicalized ({exc})"))
        else:
            computed = _sha256(data)
            _check_hash(signed.get("hash"), computed, _at(where, "hash"), problems)
            _check_signature(signed.get("signature"), data, keys, unknown, where, problems)
    return computed


def _check_hash(stated: Any, computed: str, where: str, problems: list[tuple[str, str]]) -> None:
    if not isinstance(stated, str) or not _HASH.fullmatch(stated):
        problems.append((where, "must be sha256: and 64 lowercase hex digits"))
    elif stated != computed:
        problems.append((where, f"does not match the canonical payload ({computed} computed)"))


def _check_signature(
    signature: Any,
    data: bytes,
    keys: Mapping[str, Ed25519PublicKey],
    unknown: str,
    where: str,
    problems: list[tuple[str, str]],
) -> None:
    here = _at(where, "signature")
    if not isinstance(signature, dict):
        problems.append((here, "is not a JSON object"))
        return
    _check_fields(signature, _SIGNATURE_FIELDS, here, problems)
    if signature.get("alg") != ALG:
        problems.append((f"{here}.alg", f"is {signature.get('alg')!r}, not {ALG!r}"))
    kid = signature.get("kid")
    if not isinstance(kid, str) or not kid:
        problems.append((f"{here}.kid", "must name the signing key"))
        return
    text = signature.get("value")
    try:
        if not isinstance(text, str):
            raise ValueError("not a string")
        value = from_b64url(text)
    except ValueError as exc:
        problems.append((f"{here}.value", f"is {exc}"))
        return
    if len(value) != 64:
        problems.append((f"{here}.value", f"is {len(value)} bytes, an Ed25519 signature is 64"))
        return
    key = keys.get(kid)
    if key is None:
        problems.append((here, f"key {kid} {unknown}"))
        return
    try:
        key.verify(value, data)
    except InvalidSignature:
        problems.append((here, f"invalid for key {kid}"))


def _check_payload(payload: Mapping[str, Any], where: str, problems: list[tuple[str, str]]) -> None:
    """The payload's own fields: format, case, version, the shape of previous, the reason."""
    if payload.get("format") != PLAN_FORMAT:
        problems.append((f"{where}.format", f"is {payload.get('format')!r}, not {PLAN_FORMAT!r}"))
    case = payload.get("case")
    if not isinstance(case, Mapping) or not all(
        isinstance(case.get(name), str) and case.get(name) for name in ("number", "institution")
    ):
        problems.append((f"{where}.case", "must hold the case's number and institution"))
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append((f"{where}.version", f"is {version!r}, not a number 1, 2, …"))
        return
    previous, reason = payload.get("previous"), payload.get("amendment_reason")
    if version == 1:
        if previous is not None:
            problems.append((f"{where}.previous", "must be null in the first version"))
        if reason is not None:
            problems.append((f"{where}.amendment_reason", "must be null in the first version"))
        return
    if (
        not isinstance(previous, Mapping)
        or set(previous) != {"version", "hash"}
        or previous.get("version") != version - 1
        or not isinstance(previous.get("hash"), str)
        or not _HASH.fullmatch(previous["hash"])
    ):
        problems.append(
            (f"{where}.previous", f'must be {{"version": {version - 1}, "hash": "sha256:…"}}')
        )
    if not isinstance(reason, str) or not reason.strip():
        problems.append((f"{where}.amendment_reason", "an amendment must say why"))


def _check_link(
    payload: Mapping[str, Any],
    i: int,
    where: str,
    case: Any,
    versions: list[Any],
    digests: list[str | None],
    problems: list[tuple[str, str]],
) -> None:
    """Version i's place in the chain: its number, its case, and its link to version i - 1."""
    version = payload.get("version")
    if isinstance(version, int) and version != i + 1:
        problems.append(
            (f"{where}.payload.version", f"is {version}, expected {i + 1} (versions are 1..n)")
        )
    number = _case_number(payload)
    if isinstance(case, str) and number is not None and number != case:
        problems.append((f"{where}.payload.case.number", f"is {number!r}, the file's is {case!r}"))
    if i == 0:
        return
    first = versions[0].get("payload") if isinstance(versions[0], dict) else None
    institution = _field(payload.get("case"), "institution")
    if isinstance(first, dict) and institution != _field(first.get("case"), "institution"):
        problems.append(
            (f"{where}.payload.case.institution", "differs from versions[0]'s institution")
        )
    linked = _field(payload.get("previous"), "hash")
    before = digests[i - 1]
    if isinstance(linked, str) and before is not None and linked != before:
        problems.append(
            (
                f"{where}.payload.previous.hash",
                f"does not match versions[{i - 1}] (whose payload hashes to {before})",
            )
        )


def _check_fields(
    obj: Mapping[str, Any], expected: set[str], where: str, problems: list[tuple[str, str]]
) -> None:
    missing, extra = sorted(expected - set(obj)), sorted(set(obj) - expected)
    if missing:
        problems.append((where, f"lacks {', '.join(missing)}"))
    if extra:
        problems.append((where, f"has unexpected {', '.join(extra)}"))


def _kids(versions: Iterable[Any]) -> list[str]:
    """The kids that signed versions, once each, in order of first use."""
    kids: list[str] = []
    for signed in versions:
        kid = _kid(signed)
        if kid is not None and kid not in kids:
            kids.append(kid)
    return kids


def _kid(signed: Any) -> str | None:
    kid = _field(signed.get("signature") if isinstance(signed, Mapping) else None, "kid")
    return kid if isinstance(kid, str) else None


def _case_number(payload: Any) -> str | None:
    number = _field(payload.get("case") if isinstance(payload, Mapping) else None, "number")
    return number if isinstance(number, str) else None


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else None


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _line(problem: tuple[str, str]) -> str:
    return f"{problem[0]}: {problem[1]}"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
