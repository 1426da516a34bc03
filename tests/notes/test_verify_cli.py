"""``python -m server verify FILE``, run as a user would run it, offline."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from server.notes.signature import export_file
from server.signing import SigningKeys

from ..cli import run_server
from .test_signature import CASE, signed_chain

OK_LINE = f"OK: 3 version(s) of case {CASE}, signatures by HZ-1, HZ-2, hash chain intact"


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return run_server("verify", *args)


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """A data directory whose signing-keys.json signed the plan."""
    return tmp_path / "data"


@pytest.fixture
def plan(tmp_path: Path, server_dir: Path) -> Path:
    keys = SigningKeys.load_or_create(server_dir)
    path = tmp_path / "DEMO-0001.json"
    path.write_bytes(export_file(CASE, signed_chain(keys, 3, rotate_before=3), keys.jwks()))
    (tmp_path / "jwks.json").write_text(json.dumps(keys.jwks()))
    return path


def tamper(plan: Path) -> Path:
    """The plan with one byte of the last version's rationale changed."""
    data = plan.read_bytes()
    at = data.index(b"(v3)") + 2
    changed = plan.with_name("tampered.json")
    changed.write_bytes(data[:at] + b"4" + data[at + 1 :])
    return changed


def test_good_file_with_keys_is_ok(plan: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    done = verify(str(plan), "--keys", str(tmp_path / "jwks.json"), "--data-dir", str(empty))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [OK_LINE]
    assert "warning" not in done.stderr


def test_tampered_file_with_keys_fails_and_names_the_problem(plan: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    done = verify(
        str(tamper(plan)), "--keys", str(tmp_path / "jwks.json"), "--data-dir", str(empty)
    )
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("versions[2].hash: does not match the canonical payload")
    assert "versions[2].signature: invalid for key HZ-2" in lines
    assert lines[-1].startswith("FAILED: 2 problem(s)")


def test_data_dir_keys_are_trusted(plan: Path, server_dir: Path) -> None:
    good = verify(str(plan), "--data-dir", str(server_dir))
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines() == [OK_LINE]
    bad = verify(str(tamper(plan)), "--data-dir", str(server_dir))
    assert bad.returncode == 1
    assert "versions[2].signature: invalid for key HZ-2" in bad.stdout.splitlines()


def test_another_servers_keys_reject_the_plan(plan: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    SigningKeys.load_or_create(other).ensure("HZ")
    done = verify(str(plan), "--data-dir", str(other))
    assert done.returncode == 1
    assert "keys[0]: key HZ-1 differs from the trusted key HZ-1" in done.stdout.splitlines()


def test_without_trusted_keys_the_file_keys_are_used_with_a_warning(
    plan: Path, tmp_path: Path
) -> None:
    done = verify(str(plan), "--data-dir", str(tmp_path / "empty"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [OK_LINE]
    assert "proves integrity but not origin" in done.stderr


def test_an_unreadable_path_exits_2(tmp_path: Path) -> None:
    done = verify(str(tmp_path / "missing.json"), "--data-dir", str(tmp_path))
    assert done.returncode == 2
    assert "cannot read" in done.stderr and "missing.json" in done.stderr
    assert verify(str(tmp_path), "--data-dir", str(tmp_path)).returncode == 2
