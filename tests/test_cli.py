"""The `python -m server` commands, run as a user would run them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .cli import run_server

_run = run_server


def test_demo_seed_only_prints_logins_and_seeds_once(tmp_path: Path) -> None:
    first = _run(
        "demo",
        "--data-dir",
        str(tmp_path),
        "--seed-only",
        "--demo-password",
        "pw-12345678",
        "--demo-ct",
        "3x32",
    )
    assert first.returncode == 0, first.stderr
    assert "Demo data seeded." in first.stdout and "pw-12345678" in first.stdout
    for username in (
        "admin",
        "coordinator",
        "chair",
        "radiologist",
        "pathologist",
        "surgeon",
        "oncologist",
        "records",
        "external",
    ):
        assert f"  {username} " in first.stdout
    again = _run("demo", "--data-dir", str(tmp_path), "--seed-only", "--demo-ct", "3x32")
    assert again.returncode == 0 and "already present" in again.stdout
    with sqlite3.connect(tmp_path / "eboard.sqlite3") as db:
        # Three cases to work on and DEMO-0001, whose plan is signed.
        assert db.execute('SELECT count(*) FROM "case"').fetchone() == (4,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_migrate_then_user_add(tmp_path: Path) -> None:
    assert _run("migrate", "--data-dir", str(tmp_path)).returncode == 0
    assert (
        _run("demo", "--data-dir", str(tmp_path), "--seed-only", "--demo-ct", "0").returncode == 0
    )
    added = _run(
        "user",
        "add",
        "--data-dir",
        str(tmp_path),
        "--username",
        "dr.gu",
        "--role",
        "specialist",
        "--specialty",
        "pathology",
        "--institution",
        "HZ",
        "--display-name",
        "Dr. Gu",
        env={"EBOARD_NEW_PASSWORD": "a-good-password"},
    )
    assert added.returncode == 0, added.stderr
    bad = _run(
        "user",
        "add",
        "--data-dir",
        str(tmp_path),
        "--username",
        "dr.gu2",
        "--role",
        "wizard",
        "--institution",
        "HZ",
        "--display-name",
        "X",
        env={"EBOARD_NEW_PASSWORD": "a-good-password"},
    )
    assert bad.returncode == 2 and "role: unknown role 'wizard'" in bad.stderr
    taken = _run(
        "user",
        "add",
        "--data-dir",
        str(tmp_path),
        "--username",
        "dr.gu",
        "--role",
        "specialist",
        "--institution",
        "HZ",
        "--display-name",
        "X",
        env={"EBOARD_NEW_PASSWORD": "a-good-password"},
    )
    assert taken.returncode == 2 and "is taken" in taken.stderr
    with sqlite3.connect(tmp_path / "eboard.sqlite3") as db:
        assert db.execute(
            "SELECT role, specialty FROM \"user\" WHERE username = 'dr.gu'"
        ).fetchall() == [("specialist", "pathology")]
        assert db.execute("SELECT count(*) FROM \"user\" WHERE username = 'dr.gu2'").fetchone() == (
            0,
        )


def test_demo_attaches_a_synthetic_ct_to_the_ready_case(tmp_path: Path) -> None:
    done = _run("demo", "--data-dir", str(tmp_path), "--seed-only", "--demo-ct", "5x64")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "eboard.sqlite3") as db:
        rows = db.execute(
            "SELECT s.description, count(i.id) FROM dicom_series s JOIN dicom_instance i "
            "ON i.series_id = s.id JOIN imaging_study st ON st.id = s.study_id "
            "JOIN \"case\" c ON c.id = st.case_id WHERE c.state = 'ready' "
            "GROUP BY s.id ORDER BY st.deidentified, s.number"
        ).fetchall()
    # The originals, then the external participants' de-identified copies (descriptors
    # cleaned: the copy keeps only known radiology words).
    assert rows[:2] == [("Axial 2.5 mm", 5), ("Axial 2.5 mm (JPEG-LS)", 5)]
    assert [count for _, count in rows[2:]] == [5, 5]
    bad = _run("demo", "--data-dir", str(tmp_path / "x"), "--seed-only", "--demo-ct", "lots")
    assert bad.returncode == 2 and "demo-ct must look like" in bad.stderr
