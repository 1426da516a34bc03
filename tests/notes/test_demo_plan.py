"""Done when: ``python -m server verify`` accepts the demo's finalized note, exported with
``python -m server export``, and rejects it after one byte is changed."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..cli import run_server
from ..conftest import DemoTemplate

_cli = run_server


def test_verify_accepts_the_demo_plan_and_rejects_it_after_one_byte_changes(
    demo_template: DemoTemplate, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(demo_template.path, data_dir)
    out = tmp_path / "DEMO-0001.json"
    done = _cli(
        "export",
        "--data-dir",
        str(data_dir),
        "--case",
        "DEMO-0001",
        "--format",
        "json",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "wrote version 1 of case DEMO-0001's agreed plan (json" in done.stdout

    ok = _cli("verify", str(out), "--data-dir", str(data_dir))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 1 version(s) of case DEMO-0001, signatures by HZ-1" in ok.stdout

    data = out.read_bytes()
    for needle, replacement, problem in (
        (b'"stage_group":"IIB"', b'"stage_group":"IIA"', "versions[0].hash: does not match"),
        (b'"version":1', b'"version":2', "versions[0].hash: does not match"),
        (b"Chen Jie", b"Chen Jia", "versions[0].signature: invalid for key HZ-1"),
    ):
        at = data.index(needle)
        changed = tmp_path / "changed.json"
        changed.write_bytes(data[:at] + replacement + data[at + len(needle) :])
        assert sum(a != b for a, b in zip(data, changed.read_bytes(), strict=True)) == 1
        bad = _cli("verify", str(changed), "--data-dir", str(data_dir))
        assert bad.returncode == 1, bad.stdout
        assert problem in bad.stdout, bad.stdout

    missing = _cli(
        "export", "--data-dir", str(data_dir), "--case", "HZ-NOPE", "--format", "json",
        "--out", str(out),
    )  # fmt: skip
    assert missing.returncode == 2 and "there is no case 'HZ-NOPE'" in missing.stderr
