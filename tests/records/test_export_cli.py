"""``python -m server export``, run as records staff run it: the demo's plan in all four formats
read back with third-party parsers, bulk exports with a progress bar, and bad input refused
with nothing written."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
from datetime import date, timedelta
from pathlib import Path

import hl7
from fhir.resources.R4B.bundle import Bundle
from hl7apy.parser import parse_message
from sqlmodel import func, select

from server.config import Settings
from server.models import AuditRecord
from server.services import Services

from ..cli import run_server

MRN = "HZ00054321"
DAYS = [
    "--from",
    str(date.today() - timedelta(days=14)),
    "--to",
    str(date.today() + timedelta(days=1)),
]


def _exports(settings: Settings) -> int:
    async def count() -> int:
        services = Services.build(settings)
        try:
            async with services.db.read() as db:
                query = select(func.count()).where(AuditRecord.action == "plan.export")
                return int((await db.exec(query)).one())
        finally:
            await services.db.close()

    return asyncio.run(count())


def test_the_demo_plan_exports_in_all_four_formats_from_the_cli(
    data_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    out = {}
    for fmt in ("pdf", "fhir", "hl7", "json"):
        target = tmp_path / f"plan.{fmt}"
        done = run_server(
            "export", "--case", "DEMO-0001", "--format", fmt, "--out", str(target),
            "--data-dir", str(data_dir),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"to {target}" in done.stdout
        out[fmt] = target

    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(out["pdf"]), "-"], capture_output=True, check=True
    ).stdout.decode()
    # Both languages by default: the English and the Chinese labels.
    assert "MRN" in text and "病历号" in text and "病例编号" in text and MRN in text

    bundle = Bundle.model_validate_json(out["fhir"].read_bytes())
    assert bundle.type == "document"

    er7 = out["hl7"].read_bytes().decode()  # segments end in \r, not read_text: it turns \r into \n
    assert parse_message(er7, find_groups=False).msh.msh_9.to_er7() == "MDM^T02^MDM_T02"
    assert str(hl7.parse(er7).segment("TXA")[17]) == "AU"

    verified = run_server("verify", str(out["json"]), "--data-dir", str(data_dir))
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("OK: 1 version(s) of case DEMO-0001")
    assert _exports(settings) == 4
    # A home-audience file names the patient: only its owner may read it.
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.values()} == {0o600}


def test_a_single_export_goes_into_a_directory_and_replaces_a_file_only_with_force(
    data_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    args = ["export", "--case", "DEMO-0001", "--format", "json", "--data-dir", str(data_dir)]
    done = run_server(*args, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    target = tmp_path / "DEMO-0001-plan-v1.json"
    assert target.is_file() and _exports(settings) == 1

    # The file is there: refused by name before anything is made or audited.
    target.write_bytes(b"keep me")
    for out in (tmp_path, target):
        again = run_server(*args, "--out", str(out))
        assert again.returncode == 2, again.stdout
        assert "out:" in again.stderr and "--force" in again.stderr
    assert target.read_bytes() == b"keep me" and _exports(settings) == 1

    target.chmod(0o644)
    forced = run_server(*args, "--out", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(target.read_bytes())["case"] == "DEMO-0001"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _exports(settings) == 2


def test_a_bulk_export_writes_every_plan_and_a_manifest_with_a_progress_bar(
    data_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    args = ["export", *DAYS, "--format", "fhir", "--out", str(folder), "--data-dir", str(data_dir)]
    done = run_server(*args)
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "1/1" in done.stderr  # tqdm's bar
    assert sorted(p.name for p in folder.iterdir()) == [
        "DEMO-0001-plan-v1.fhir.json",
        "manifest.json",
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"][0]["case"] == "DEMO-0001" and manifest["failed"] == []
    assert manifest["zone"] == "UTC" and manifest["media_type"] == "application/fhir+json"
    assert manifest["created_at"].endswith("Z") and manifest["files"][0]["plan_hash"].startswith(
        "sha256:"
    )
    Bundle.model_validate_json((folder / "DEMO-0001-plan-v1.fhir.json").read_bytes())
    assert _exports(settings) == 1
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}

    # The directory is no longer empty: refused without --force, nothing written.
    stamp = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = run_server(*args)
    assert again.returncode == 2
    assert "out:" in again.stderr and "--force" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamp
    assert _exports(settings) == 1

    forced = run_server(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert _exports(settings) == 2


def test_bad_exports_from_the_cli_are_refused_and_write_nothing(
    data_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    target = tmp_path / "x"
    common = ["--out", str(target), "--data-dir", str(data_dir)]
    cases = [
        (["--case", "DEMO-0001", "--format", "docx"], "format"),
        (["--case", "HZ-2026-0001", "--format", "pdf"], "no finalized note"),
        (["--case", "NOPE-1", "--format", "pdf"], "no case"),
        (["--case", "DEMO-0001", "--format", "pdf", "--language", "fr"], "language"),
        (["--from", "2026-11-30", "--to", "2026-11-01", "--format", "pdf"], "to:"),
        (["--from", "2020-01-01", "--to", "2026-11-01", "--format", "pdf"], "366"),
        (["--from", "2001-01-01", "--to", "2001-01-02", "--format", "pdf"], "no agreed plans"),
        (["--case", "DEMO-0001", *DAYS, "--format", "pdf"], "either --case"),
        (["--case", "DEMO-0001", "--format", "pdf", "--audience", "all"], "audience"),
        (["--case", "DEMO-0001", "--format", "pdf", "--export-workers", "x"], "export-workers"),
    ]
    for args, words in cases:
        done = run_server("export", *args, *common)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert words in done.stderr, (args, done.stderr)
        assert not target.exists(), args
    # An --out whose folder does not exist: refused by name, not a traceback.
    missing = tmp_path / "no" / "such" / "plan.pdf"
    for args in (["--case", "DEMO-0001"], DAYS):
        done = run_server(
            "export", *args, "--format", "json", "--out", str(missing),
            "--data-dir", str(data_dir),
        )  # fmt: skip
        assert done.returncode == 2 and "out:" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "no").exists()
    assert _exports(settings) == 0


def test_rotating_an_institutions_signing_key_keeps_its_signed_plans_verifiable(
    data_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    before = json.loads((data_dir / "signing-keys.json").read_text())["active"]["HZ"]
    done = run_server("keys", "rotate-signing", "--institution", "HZ", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    after = json.loads((data_dir / "signing-keys.json").read_text())["active"]["HZ"]
    assert after != before and after in done.stdout

    # The plan signed with the old key still verifies against the server's keys.
    target = tmp_path / "plan.json"
    exported = run_server(
        "export", "--case", "DEMO-0001", "--format", "json", "--out", str(target),
        "--data-dir", str(data_dir),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    verified = run_server("verify", str(target), "--data-dir", str(data_dir))
    assert verified.returncode == 0 and before in verified.stdout, verified.stdout

    async def rotations() -> list[AuditRecord]:
        services = Services.build(settings)
        try:
            async with services.db.read() as db:
                query = select(AuditRecord).where(AuditRecord.action == "signing_key.rotate")
                return list(await db.exec(query))
        finally:
            await services.db.close()

    (audited,) = asyncio.run(rotations())
    assert audited.detail == {"kid": after, "via": "cli"}

    for args, words in [([], "needs --institution"), (["--institution", "XX"], "no institution")]:
        bad = run_server("keys", "rotate-signing", *args, "--data-dir", str(data_dir))
        assert bad.returncode == 2 and words in bad.stderr, bad.stderr
    assert json.loads((data_dir / "signing-keys.json").read_text())["active"]["HZ"] == after
    assert len(asyncio.run(rotations())) == 1
