"""The agreed plan as a PDF, read back with Debian's poppler-utils: pdftotext, pdftoppm, pdfinfo."""

from __future__ import annotations

import copy
import dataclasses
import html
import re
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from server.errors import Invalid
from server.export.pdf import plan_html, plan_pdf
from server.export.record import PlanRecord
from server.notes.templates import TemplateSet

THORACIC = "thoracic"
CURATIVE = "373808002"


@pytest.fixture(scope="module")
def templates() -> TemplateSet:
    return TemplateSet()


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "plan.pdf"
    path.write_bytes(pdf)
    run = subprocess.run(
        ["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"],
        capture_output=True,
        check=True,
    )
    return run.stdout.decode("utf-8")


def _with_note(record: PlanRecord, **fields: object) -> PlanRecord:
    signed = copy.deepcopy(record.signed)
    signed["payload"]["note"].update(fields)
    return dataclasses.replace(record, signed=signed, versions=[signed])


def test_chinese_pdf_has_the_templates_chinese_labels_and_the_summary(
    demo_record: PlanRecord, templates: TemplateSet, tmp_path: Path
) -> None:
    text = _text(plan_pdf(demo_record, templates, languages=["zh-CN"]), tmp_path)

    assert templates.label(THORACIC, "staging.stage_group", "zh-CN") in text
    assert templates.choice_label(THORACIC, "intent", CURATIVE, "zh-CN") in text
    assert templates.choice_label(THORACIC, "staging.stage_group", "IIB", "zh-CN") in text
    assert demo_record.summary in text
    assert templates.choice_label(THORACIC, "intent", CURATIVE, "en") not in text


def test_english_pdf_shows_coded_values_by_their_display(
    demo_record: PlanRecord, templates: TemplateSet, tmp_path: Path
) -> None:
    text = _text(plan_pdf(demo_record, templates, languages=["en"]), tmp_path)

    assert "Stage IIB" == templates.choice_label(THORACIC, "staging.stage_group", "IIB", "en")
    assert re.search(r"Stage group\s+Stage IIB", text)
    assert re.search(r"Treatment intent\s+Curative", text)
    assert f"SNOMED CT {CURATIVE}" in text  # the code only in small print beside its display
    assert "Right lower lobectomy" in text
    assert templates.choice_label(THORACIC, "intent", CURATIVE, "zh-CN") not in text
    # The summary stays in its language; the translation says it is one, and whose.
    assert demo_record.summary in text
    assert "Translation (en) by Coordinator Li Na" in text
    assert demo_record.translation is not None and demo_record.translation in text


def test_bilingual_pdf_has_both_languages(
    demo_record: PlanRecord, templates: TemplateSet, tmp_path: Path
) -> None:
    text = _text(plan_pdf(demo_record, templates), tmp_path)

    for language in ("en", "zh-CN"):
        assert templates.label(THORACIC, "staging.stage_group", language) in text
        assert templates.choice_label(THORACIC, "intent", CURATIVE, language) in text
        assert templates.label(THORACIC, "recommendations", language) in text
    assert "Stage IIB" in text and "Right lower lobectomy" in text
    assert demo_record.summary in text
    # Home audience: the patient is named.
    assert "Chen Hui" in text and "HZ00054321" in text and "1958-09-09" in text


def test_external_pdf_has_the_case_number_and_no_patient_identifiers(
    external_record: PlanRecord, templates: TemplateSet, tmp_path: Path
) -> None:
    text = _text(plan_pdf(external_record, templates), tmp_path)

    assert "DEMO-0001" in text
    # The plan's hash is random hex and may hold any four digits: leave it out of the search.
    digits = external_record.signed["hash"].partition(":")[2]
    fingerprint = " ".join(digits[i : i + 4] for i in range(0, 16, 4))
    scrubbed = text.replace(digits, "").replace(fingerprint, "")
    for identifier in ("Chen Hui", "HZ00054321", "1958"):
        assert identifier not in scrubbed


def test_signature_block_shows_key_hash_and_fingerprint(
    demo_record: PlanRecord, templates: TemplateSet, tmp_path: Path
) -> None:
    text = _text(plan_pdf(demo_record, templates, languages=["en"]), tmp_path)

    digest = demo_record.signed["hash"]
    assert re.search(r"Key id\s+HZ-1 \(Ed25519\)", text)
    assert re.search(r"Plan hash\s+" + re.escape(digest), text)
    digits = digest.partition(":")[2]
    assert re.search(r"Fingerprint\s+" + " ".join(digits[i : i + 4] for i in range(0, 16, 4)), text)
    assert re.search(r"Signed by\s+Dr\. Zhang Wei \(chair\) \(HZ\)", text)


def test_pdf_is_valid_renders_and_has_a_sane_page_count(
    demo_record: PlanRecord, templates: TemplateSet, tmp_path: Path
) -> None:
    path = tmp_path / "plan.pdf"
    path.write_bytes(plan_pdf(demo_record, templates))

    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True)
    count = re.search(r"^Pages:\s+(\d+)$", info.stdout, re.M)
    assert count is not None
    pages = int(count.group(1))
    assert 1 <= pages <= 6
    assert re.search(r"^Page size:\s+595\.\d+ x 841\.\d+ pts \(A4\)$", info.stdout, re.M)
    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
        check=True,
    )
    (png,) = tmp_path.glob("page*.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    # Every page carries its number and the plan's fingerprint (the running footer).
    text = _text(path.read_bytes(), tmp_path)
    assert re.search(rf"\b{pages} ?/ ?{pages}\n", text)
    assert text.count("DEMO-0001 · v1 ·") == pages


def test_markup_in_the_note_comes_out_as_text(
    demo_record: PlanRecord, templates: TemplateSet, tmp_path: Path
) -> None:
    record = _with_note(
        demo_record,
        rationale='<script>alert("x")</script>\nSecond line & <b>not bold</b>',
    )

    page = plan_html(record, templates, languages=["en"])
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;\nSecond line &amp; &lt;b&gt;" in page
    text = _text(plan_pdf(record, templates, languages=["en"]), tmp_path)
    assert '<script>alert("x")</script>\nSecond line & <b>not bold</b>' in text


def test_rationale_keeps_its_line_breaks(demo_record: PlanRecord, templates: TemplateSet) -> None:
    page = plan_html(demo_record, templates, languages=["en"])

    rationale = demo_record.payload["note"]["rationale"]
    assert "\n" in rationale and f'<div class="text">{html.escape(rationale)}</div>' in page


def test_a_field_the_template_no_longer_has_is_still_printed(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    record = _with_note(demo_record, tumor_board_remark="Discussed twice")

    page = plan_html(record, templates, languages=["en"])
    assert "tumor_board_remark" in page and "Discussed twice" in page


def test_amendment_history_lists_every_version_with_reason_and_hash(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    first = demo_record.signed
    second = copy.deepcopy(first)
    second["payload"].update(
        version=2, previous=first["hash"], amendment_reason="Pathology: pT3N1, upstaged"
    )
    second["hash"] = "sha256:" + "ab" * 32
    record = dataclasses.replace(demo_record, signed=second, versions=[first, second])

    page = plan_html(record, templates, languages=["en"])
    assert "Agreed plan — version 2" in page and "Amends version 1" in page
    assert "First version" in page and page.count("Pathology: pT3N1, upstaged") == 2
    assert first["hash"] in page and second["hash"] in page


def test_session_time_in_utc_and_the_institutions_zone(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    utc_only = plan_html(demo_record, templates, languages=["en"])
    zoned = plan_html(demo_record, templates, languages=["en"], zone=ZoneInfo("Asia/Shanghai"))

    session = demo_record.payload["session"]
    start = session["start_at"][:16].replace("T", " ")
    # The demo's past session is placed relative to now: one that runs past midnight UTC (a
    # suite started between 22:30 and 00:00) names the day it ends, too.
    end = session["end_at"][:16].replace("T", " ")
    end = end[11:] if end[:10] == start[:10] else end
    assert f"{start}–{end} UTC" in utc_only
    assert "Asia/Shanghai" not in utc_only and "Asia/Shanghai" in zoned


def test_quorum_names_the_missing_specialties(
    demo_record: PlanRecord, templates: TemplateSet
) -> None:
    signed = copy.deepcopy(demo_record.signed)
    signed["payload"]["quorum"]["missing"] = ["pathology", "radiology"]
    record = dataclasses.replace(demo_record, signed=signed)

    assert "Not met — missing: Pathology, Radiology" in plan_html(
        record, templates, languages=["en"]
    )
    assert "不符合 — 缺席专科：病理科、影像科" in plan_html(record, templates, languages=["zh-CN"])


@pytest.mark.parametrize("languages", [[], ["fr"], ["en", "en"], ["en", "zh-CN", "en"]])
def test_languages_must_be_one_or_both_of_en_and_zh_cn(
    demo_record: PlanRecord, templates: TemplateSet, languages: list[str]
) -> None:
    with pytest.raises(Invalid, match="languages"):
        plan_html(demo_record, templates, languages=languages)
