"""Signed agreed plans: institution keys, the signed format, and checking an export file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from server.errors import ConfigError, Invalid
from server.notes.signature import (
    canonical,
    digest,
    export_file,
    sign_version,
    verify_file,
    verify_version,
)
from server.signing import SigningKeys, b64url, keys_from_jwks

CASE = "DEMO-0001"


def payload(version: int, previous: dict[str, Any] | None, reason: str | None) -> dict[str, Any]:
    return {
        "format": "eboard-agreed-plan/1",
        "case": {"number": CASE, "institution": "HZ"},
        "version": version,
        "previous": previous,
        "amendment_reason": reason,
        "note": {
            "treatment_intent": {"code": "373808002", "display": "Curative"},
            "rationale": f"Neoadjuvant chemotherapy, then surgery. 新辅助化疗后手术 (v{version})",
        },
        "attendance": [{"name": "Dr Wang", "specialty": "radiology"}],
        "session": {"id": 7},
        "finalized_by": "chair",
        "finalized_at": "2025-03-04T09:30:00Z",
    }


def signed_chain(keys: SigningKeys, n: int, *, rotate_before: int = 0) -> list[dict[str, Any]]:
    """n signed versions of the demo case's plan, each amendment linked to the one before."""
    versions: list[dict[str, Any]] = []
    for number in range(1, n + 1):
        if number == rotate_before:
            keys.rotate("HZ")
        previous = versions[-1] if versions else None
        link = {"version": number - 1, "hash": previous["hash"]} if previous else None
        reason = f"pathology review changed the stage (amendment {number - 1})" if link else None
        versions.append(sign_version(payload(number, link, reason), lambda d: keys.sign("HZ", d)))
    return versions


def hand_signed(keys: SigningKeys, body: dict[str, Any]) -> dict[str, Any]:
    """A version signed without sign_version's checks, as a forger with the key could."""
    kid, value = keys.sign("HZ", canonical(body))
    return {
        "payload": body,
        "hash": digest(body),
        "signature": {"alg": "Ed25519", "kid": kid, "value": b64url(value)},
    }


@pytest.fixture
def keys(tmp_path: Path) -> SigningKeys:
    return SigningKeys.load_or_create(tmp_path / "data")


def trusted(keys: SigningKeys) -> dict[str, Any]:
    return keys_from_jwks(keys.jwks())


def test_one_version_roundtrip_with_trusted_and_with_file_keys(keys: SigningKeys) -> None:
    data = export_file(CASE, signed_chain(keys, 1), keys.jwks())
    report = verify_file(data, trusted(keys))
    assert report.ok, report.problems
    assert (report.versions, report.case, report.kids) == (1, CASE, ["HZ-1"])
    assert report.keys_source == "trusted"
    own = verify_file(data)
    assert own.ok and own.keys_source == "file"


def test_three_versions_with_amendments_and_a_rotated_key_verify(keys: SigningKeys) -> None:
    versions = signed_chain(keys, 3, rotate_before=3)
    data = export_file(CASE, versions, keys.jwks())
    report = verify_file(data, trusted(keys))
    assert report.ok, report.problems
    assert report.versions == 3 and report.kids == ["HZ-1", "HZ-2"]
    exported = json.loads(data)
    assert [k["kid"] for k in exported["keys"]] == ["HZ-1", "HZ-2"]
    assert exported["versions"][2]["payload"]["previous"] == {
        "version": 2,
        "hash": versions[1]["hash"],
    }
    assert data == canonical(exported)


def _mutations(data: bytes) -> list[tuple[int, bytes]]:
    """One bit flipped, and another printable character, at every 7th byte."""
    changed = []
    for at in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        other = bytearray(data)
        other[at] = ord("A") if data[at] != ord("A") else ord("B")
        changed += [(at, bytes(flipped)), (at, bytes(other))]
    return changed


def test_every_single_byte_change_is_rejected(keys: SigningKeys) -> None:
    data = export_file(CASE, signed_chain(keys, 2), keys.jwks())
    mutations = _mutations(data)
    assert len(mutations) > 200
    for at, changed in mutations:
        with_trusted = verify_file(changed, trusted(keys))
        assert not with_trusted.ok, f"change at byte {at} accepted: {changed[at - 20 : at + 20]!r}"
        assert with_trusted.problems
        assert not verify_file(changed).ok, f"change at byte {at} accepted with the file's keys"


def _replace_at(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + 1 :]


def test_a_payload_byte_change_names_the_version_hash_and_signature(keys: SigningKeys) -> None:
    data = export_file(CASE, signed_chain(keys, 2), keys.jwks())
    at = data.index(b"(v2)") + 2  # the "2" of the second version's rationale
    report = verify_file(_replace_at(data, at, b"3"), trusted(keys))
    assert not report.ok
    assert report.problems[0].startswith("versions[1].hash: does not match the canonical payload")
    assert "versions[1].signature: invalid for key HZ-1" in report.problems
    assert not any(p.startswith("versions[0]") or p.startswith("file") for p in report.problems)


def test_a_signature_byte_change_names_that_signature(keys: SigningKeys) -> None:
    versions = signed_chain(keys, 2)
    data = export_file(CASE, versions, keys.jwks())
    value = versions[0]["signature"]["value"].encode()
    at = data.index(value) + 10
    new = b"x" if data[at : at + 1] != b"x" else b"y"
    report = verify_file(_replace_at(data, at, new), trusted(keys))
    assert report.problems == ["versions[0].signature: invalid for key HZ-1"]


def test_an_inserted_space_is_a_canonical_form_problem_only(keys: SigningKeys) -> None:
    data = export_file(CASE, signed_chain(keys, 2), keys.jwks())
    at = data.index(b'"versions"') + len(b'"versions":')
    report = verify_file(data[:at] + b" " + data[at:], trusted(keys))
    assert report.problems == [f"file: not in RFC 8785 canonical form (byte {at} differs)"]


def test_truncated_file_is_not_valid_json(keys: SigningKeys) -> None:
    data = export_file(CASE, signed_chain(keys, 1), keys.jwks())
    cut = data.index(b',"keys"') + 1
    report = verify_file(data[:cut])
    assert report.problems == [f"file: not valid JSON (line 1, column {cut + 1})"]
    assert verify_file(b"\xff" + data).problems == ["file: not valid UTF-8 (byte 0)"]


def test_a_repeated_name_is_refused(keys: SigningKeys) -> None:
    data = export_file(CASE, signed_chain(keys, 1), keys.jwks())
    doubled = data.replace(b'{"case":', b'{"case":"X","case":', 1)
    assert verify_file(doubled).problems == [
        "file: not valid JSON for signing (the name 'case' appears twice in one object)"
    ]


def test_a_broken_chain_is_named(keys: SigningKeys) -> None:
    first = signed_chain(keys, 1)[0]
    wrong = "sha256:" + "0" * 64
    second = sign_version(
        payload(2, {"version": 1, "hash": wrong}, "new imaging"), lambda d: keys.sign("HZ", d)
    )
    report = verify_file(export_file(CASE, [first, second], keys.jwks()), trusted(keys))
    assert report.problems == [
        "versions[1].payload.previous.hash: does not match versions[0] "
        f"(whose payload hashes to {first['hash']})"
    ]


def test_a_missing_version_breaks_the_numbering(keys: SigningKeys) -> None:
    v1, _, v3 = signed_chain(keys, 3)
    report = verify_file(export_file(CASE, [v1, v3], keys.jwks()), trusted(keys))
    assert "versions[1].payload.version: is 3, expected 2 (versions are 1..n)" in report.problems
    assert any(p.startswith("versions[1].payload.previous.hash:") for p in report.problems)


def test_an_amendment_without_a_reason_is_neither_signed_nor_accepted(keys: SigningKeys) -> None:
    first = signed_chain(keys, 1)[0]
    link = {"version": 1, "hash": first["hash"]}
    with pytest.raises(Invalid) as refused:
        sign_version(payload(2, link, "  "), lambda d: keys.sign("HZ", d))
    assert refused.value.errors[0].field == "payload.amendment_reason"
    forged = hand_signed(keys, payload(2, link, None))
    report = verify_file(export_file(CASE, [first, forged], keys.jwks()), trusted(keys))
    assert report.problems == ["versions[1].payload.amendment_reason: an amendment must say why"]


def test_another_servers_key_with_the_same_kid_is_not_trusted(
    keys: SigningKeys, tmp_path: Path
) -> None:
    other = SigningKeys.load_or_create(tmp_path / "other")
    other.ensure("HZ")
    data = export_file(CASE, signed_chain(keys, 1), keys.jwks())
    report = verify_file(data, trusted(other))
    assert report.problems == [
        "keys[0]: key HZ-1 differs from the trusted key HZ-1",
        "versions[0].signature: invalid for key HZ-1",
    ]


def test_an_unknown_kid_is_named(keys: SigningKeys, tmp_path: Path) -> None:
    data = export_file(CASE, signed_chain(keys, 1), keys.jwks())
    roc_only = SigningKeys.load_or_create(tmp_path / "roc")
    roc_only.ensure("ROC")
    assert verify_file(data, trusted(roc_only)).problems == [
        "keys[0]: key HZ-1 is not a trusted key",
        "versions[0].signature: key HZ-1 is not among the trusted keys",
    ]
    without_keys = json.loads(data)
    without_keys["keys"] = []
    assert verify_file(canonical(without_keys)).problems == [
        "versions[0].signature: key HZ-1 is not among the file's keys"
    ]


def test_export_refuses_a_kid_it_has_no_public_key_for(keys: SigningKeys) -> None:
    with pytest.raises(Invalid, match="no public key HZ-1"):
        export_file(CASE, signed_chain(keys, 1), {"keys": []})


def test_one_signed_version_is_checked_for_hash_and_signature(keys: SigningKeys) -> None:
    signed = signed_chain(keys, 2)[1]
    assert verify_version(signed, keys.public("HZ-1")) == []
    report = verify_file(canonical(signed), trusted(keys))
    assert report.ok and not report.chained and report.notes
    assert (report.versions, report.case, report.kids) == (1, CASE, ["HZ-1"])
    tampered = json.loads(canonical(signed))
    tampered["payload"]["note"]["rationale"] = "Watchful waiting."
    problems = verify_version(tampered, keys.public("HZ-1"))
    assert problems[0].startswith("hash: does not match the canonical payload (sha256:")
    assert problems[1:] == ["signature: invalid for key HZ-1"]
    assert verify_version(signed, None) == ["signature: key HZ-1 is not a known key"]
    alone = verify_file(canonical(signed))
    assert alone.problems == [
        "signature: key HZ-1 is unknown: a single version carries no keys, "
        "so trusted keys must be given"
    ]


@pytest.mark.parametrize("text", [b"null", b"[]", b"{}", b"1", b'"x"'])
def test_json_that_is_not_a_file_is_refused(text: bytes) -> None:
    report = verify_file(text)
    assert not report.ok and report.problems


def test_key_file_is_private_and_refused_when_readable_by_others(tmp_path: Path) -> None:
    keys = SigningKeys.load_or_create(tmp_path)
    keys.ensure("HZ")
    path = tmp_path / "signing-keys.json"
    assert path.stat().st_mode & 0o777 == 0o600
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by its owner only"):
        SigningKeys.load(tmp_path)
    with pytest.raises(ConfigError, match="readable by its owner only"):
        SigningKeys.load_or_create(tmp_path)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    SigningKeys.load_or_create(tmp_path).ensure("HZ")
    path = tmp_path / "signing-keys.json"
    raw = json.loads(path.read_text())
    raw["active"]["HZ"] = "HZ-9"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="damaged"):
        SigningKeys.load(tmp_path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="damaged"):
        SigningKeys.load(tmp_path)


def test_jwks_lists_rotated_keys_and_old_plans_still_verify(tmp_path: Path) -> None:
    keys = SigningKeys.load_or_create(tmp_path)
    old = signed_chain(keys, 1)
    assert keys.rotate("HZ") == "HZ-2"
    assert keys.ensure("ROC") == "ROC-1"
    assert keys.sign("HZ", b"x")[0] == "HZ-2"
    jwks = keys.jwks()
    assert [(k["kid"], k["institution"]) for k in jwks["keys"]] == [
        ("HZ-1", "HZ"),
        ("HZ-2", "HZ"),
        ("ROC-1", "ROC"),
    ]
    assert all(
        (k["kty"], k["crv"], k["use"], k["alg"]) == ("OKP", "Ed25519", "sig", "EdDSA")
        for k in jwks["keys"]
    )
    reread = SigningKeys.load(tmp_path)
    assert reread.jwks() == jwks
    assert verify_file(export_file(CASE, old, reread.jwks()), trusted(reread)).ok


def test_a_key_made_by_another_process_is_seen_and_kept(tmp_path: Path) -> None:
    one, two = SigningKeys.load_or_create(tmp_path), SigningKeys.load_or_create(tmp_path)
    assert one.ensure("HZ") == "HZ-1"
    assert two.ensure("HZ") == "HZ-1"
    assert two.rotate("HZ") == "HZ-2"
    assert one.public("HZ-2") is not None
    assert one.sign("HZ", b"plan")[0] == "HZ-2"
    assert one.jwks() == two.jwks()
