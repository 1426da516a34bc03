"""Issue #6, done when: the demo's finalized note exports in all four formats from the records
page, each read back by a third-party parser; a bulk export runs to its ZIP behind a progress
bar; the board metrics show the demo's board; a reversed date range is refused, naming the field,
and starts nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from hl7apy.consts import VALIDATION_LEVEL  # type: ignore[import-untyped]
from hl7apy.parser import parse_message  # type: ignore[import-untyped]
from playwright.sync_api import Browser, BrowserContext, Download, Locator, Page, expect

from .conftest import ROOT, Server, api_call, log_in, login_token

CASE = "DEMO-0001"
# Labels of the PDF's own tables (server/export/pdf.py), none of them patient data.
ZH_LABELS = ("临床问题", "参会人员", "电子签名")
EN_LABELS = ("Clinical question", "Attendance", "Signature")


@pytest.fixture(scope="module")
def context(server: Server, browser: Browser) -> Iterator[BrowserContext]:
    """A records clerk's browser, logged in once. UTC, so "today" in the date fields is the
    server's day too."""
    context = browser.new_context(locale="en-US", timezone_id="UTC", accept_downloads=True)
    page = context.new_page()
    log_in(page, server, "records")
    expect(page.get_by_test_id("current-user")).to_contain_text("Records Office Xu")
    page.close()
    yield context
    context.close()


@pytest.fixture
def records(server: Server, context: BrowserContext) -> Iterator[Page]:
    """The records page, reached through its navigation entry; fails on any page error."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}/#/boards")
    page.get_by_role("link", name="Records").click()
    expect(page.get_by_role("heading", name="Records", level=1)).to_be_visible()
    yield page
    page.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def demo_board(server: Server) -> str:
    """The name of the board DEMO-0001 was discussed by."""
    token = login_token(server, "coordinator")
    cases = api_call(server, "GET", "/api/cases", token)["items"]
    board_id = next(c["board_id"] for c in cases if c["number"] == CASE)
    boards = api_call(server, "GET", "/api/boards?tz=UTC", token)["items"]
    return str(next(b["name"] for b in boards if b["id"] == board_id))


def _region(page: Page, name: str) -> Locator:
    return page.get_by_role("region", name=name)


def _download(page: Page, control: Locator, folder: Path) -> Path:
    with page.expect_download(timeout=30_000) as info:
        control.click()
    download: Download = info.value
    assert download.failure() is None, download.failure()
    path = folder / download.suggested_filename
    download.save_as(path)
    return path


def _search(page: Page, search: Locator, asked: str) -> None:
    """Submit the search form and wait for the server's answer to the body holding `asked`."""
    with page.expect_response(
        lambda r: "/api/records/search" in r.url and asked in (r.request.post_data or "")
    ):
        search.get_by_role("button", name="Search").click()


def _pdf_text(path: Path) -> str:
    run = subprocess.run(
        ["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    )
    return run.stdout.decode("utf-8")


def test_records_clerk_finds_the_demo_plan_and_exports_it_in_every_format(
    records: Page, server: Server, tmp_path: Path
) -> None:
    page = records
    search = _region(page, "Find agreed plans")
    rows = search.get_by_test_id("record-row")
    search.get_by_label("Case number").fill(CASE)
    _search(page, search, '"case_number":"DEMO-0001"')
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(CASE)

    # By MRN alone (matched through the keyed hash on the server) it is the same plan.
    search.get_by_label("Case number").fill("")
    search.get_by_label("MRN").fill("HZ00054321")
    _search(page, search, '"mrn":"HZ00054321"')
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(CASE)
    rows.first.get_by_role("button", name=CASE).click()

    record = page.get_by_test_id("record")
    plan = record.locator("[data-agreed-plan]")
    expect(plan).to_be_visible()
    expect(plan).to_contain_text("Right lower lobectomy with mediastinal node dissection")
    expect(record.locator("[data-signature-status]")).to_have_attribute("data-verified", "true")
    export = record.get_by_role("group", name="Export", exact=True)

    # PDF in both languages side by side, then in Chinese alone.
    both = _download(page, export.get_by_role("button", name="Export PDF"), tmp_path / "both")
    assert both.read_bytes().startswith(b"%PDF")
    text = _pdf_text(both)
    assert CASE in text
    for label in ZH_LABELS + EN_LABELS:
        assert label in text, label
    export.get_by_label("Language").select_option("zh-CN")
    chinese = _download(page, export.get_by_role("button", name="Export PDF"), tmp_path / "zh")
    text = _pdf_text(chinese)
    for label in ZH_LABELS:
        assert label in text, label
    assert "Clinical question" not in text
    expect(export.get_by_test_id("export-status")).to_contain_text(chinese.name)

    fhir = _download(page, export.get_by_role("button", name="Export FHIR R4 bundle"), tmp_path)
    bundle = Bundle.model_validate_json(fhir.read_text(encoding="utf-8"))
    assert bundle.type == "document" and bundle.entry
    first = bundle.entry[0].resource
    assert first is not None and first.get_resource_type() == "Composition"

    hl7 = _download(page, export.get_by_role("button", name="Export HL7 v2 MDM"), tmp_path)
    er7 = hl7.read_text(encoding="utf-8")
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    assert message.msh.msh_9.to_er7().startswith("MDM^T02")
    segments = {line[:3] for line in er7.replace("\n", "\r").split("\r") if line}
    assert {"MSH", "TXA", "OBX"} <= segments

    signed = _download(page, export.get_by_role("button", name="Export signed JSON"), tmp_path)
    verify = subprocess.run(
        [sys.executable, "-m", "server", "verify", str(signed), "--data-dir", str(server.data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_bulk_export_runs_to_a_zip_holding_the_demo_plan(
    records: Page, tmp_path: Path, demo_board: str
) -> None:
    page = records
    bulk = _region(page, "Bulk export")
    # The preset range (the last 30 days) covers last week's plan.
    bulk.get_by_label("Format").select_option(label="Signed JSON")
    bulk.get_by_label("Audience").select_option(label="External (case number only)")
    bulk.get_by_role("button", name="Start export").click()
    progress = bulk.get_by_role("progressbar", name="Export progress")
    expect(progress).to_be_visible()
    expect(bulk.get_by_test_id("bulk-status")).to_contain_text("Done", timeout=30_000)
    assert progress.get_attribute("value") == progress.get_attribute("max")
    archive = _download(page, bulk.get_by_role("link", name="Download ZIP"), tmp_path)
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        manifest = json.loads(zipped.read("manifest.json"))
    assert any(CASE in name for name in names), names
    assert manifest["audience"] == "external" and manifest["format"] == "json"

    # The metrics table shows the demo's board.
    metrics = _region(page, "Board metrics")
    expect(metrics.get_by_role("rowheader", name=demo_board)).to_be_visible()


def test_reversed_date_range_is_refused_naming_the_field_and_starts_nothing(
    records: Page, server: Server
) -> None:
    page = records
    today = datetime.now(UTC).date()
    start, end = today.isoformat(), (today - timedelta(days=10)).isoformat()
    bulk_body = {"from": start, "to": end, "board_id": None, "format": "pdf"}
    expected = _refusal(server, {**bulk_body, "language": "both", "audience": "home"})

    # The server's message is the "to" field's own description; no job is shown, no results.
    bulk = _region(page, "Bulk export")
    _submit_range(bulk, start, end, "Start export", expected)
    expect(bulk.get_by_role("progressbar")).to_have_count(0)
    search = _region(page, "Find agreed plans")
    _submit_range(search, start, end, "Search", expected)
    expect(search.get_by_test_id("record-row")).to_have_count(0)


def _submit_range(form: Locator, start: str, end: str, submit: str, refusal: str) -> None:
    """Submit `form` with the range `start`..`end` and see it refused over "to" as `refusal`."""
    form.get_by_label("Signed from").fill(start)
    form.get_by_label("Signed to").fill(end)
    form.get_by_role("button", name=submit).click()
    to = form.get_by_label("Signed to")
    expect(to).to_have_attribute("aria-invalid", "true")
    expect(to).to_have_accessible_description(refusal)
    expect(form.get_by_role("alert")).to_be_visible()


def _refusal(server: Server, body: dict[str, Any]) -> str:
    """The server's own words for a bulk export it refuses over `to`, as a script sees them."""
    token = login_token(server, "records")
    req = urllib.request.Request(
        f"{server.url}/api/exports",
        method="POST",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code in (400, 422)  # the API's catalogue answers bad input with 422
    problem = json.load(refused.value)
    named = [e for e in problem["errors"] if e["field"] == "to"]
    assert named, problem
    return str(named[0]["message"])
