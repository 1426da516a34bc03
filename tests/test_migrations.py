"""Migrations upgrade a database that already holds data, not only an empty one."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, event, text

from server.db import alembic_config


def test_upgrade_from_0003_keeps_stored_imaging(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    # The server runs SQLite with foreign keys on; so must the upgrade.
    event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys=ON"))
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.execute(
            text("INSERT INTO institution (id, code, name, timezone) VALUES (1, 'HZ', 'H', 'UTC');")
        )
        conn.execute(
            text(
                "INSERT INTO user (id, username, display_name, email, password_hash, role, "
                "institution_id, timezone, locale, active, created_at) VALUES (1, 'u', 'U', '', "
                "'x', 'admin', 1, 'UTC', 'en', 1, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO board (id, name, tumor_site, home_institution_id, timezone, rrule, "
                "start_time, start_date, duration_minutes, required_specialties, "
                "readiness_max_age_days, created_at) VALUES (1, 'B', 'generic', 1, 'UTC', "
                "'FREQ=WEEKLY', '07:30', '2026-01-01', 60, '[]', 90, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO patient (id, institution_id, mrn_hash, mrn_enc, name_enc, "
                "birth_date_enc, sex_enc, created_at) VALUES (1, 1, 'h', 'm', 'n', 'b', 's', "
                "'2026-01-01')"
            )
        )
        conn.execute(
            text(
                'INSERT INTO "case" (id, number, board_id, patient_id, home_institution_id, state, '
                "clinical_question, clinical_summary_enc, summary_language, summary_updated_at, "
                "created_by, created_at, updated_at) VALUES "
                "(1, 'HZ-1', 1, 1, 1, 'ready', 'Q', 'S', "
                "'en', '2026-01-01', 1, '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO imaging_study (id, case_id, study_instance_uid, description, "
                "modality, study_date, added_by, added_at) VALUES "
                "(1, 1, '1.2.3', '', 'CT', '2026-01-01', 1, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO dicom_series (id, study_id, series_uid, alias, modality, description, "
                "burned_in, created_at) VALUES (1, 1, '1.2.3.4', 'a1', 'CT', '', 0, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO dicom_instance (id, series_id, sop_uid, sop_class_uid, path, "
                "transfer_syntax, rows, columns, frames, frame_index, dicom_json) VALUES (1, 1, "
                "'1.2.3.4.5', '1.2', 'p', '1.2.840.10008.1.2.1', 1, 1, 1, '[]', '{}')"
            )
        )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        row = conn.execute(
            text(
                "SELECT s.source_id, s.cleared_at, s.cleared_by, s.clearance_reason, "
                "st.deidentified, count(i.id) FROM dicom_series s "
                "JOIN imaging_study st ON st.id = s.study_id JOIN dicom_instance i "
                "ON i.series_id = s.id GROUP BY s.id"
            )
        ).one()
    # Stored series are neither copies nor cleared: a burned-in one stays withheld.
    assert tuple(row) == (None, None, None, None, 0, 1)
