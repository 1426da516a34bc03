"""A coordinator in Hangzhou schedules a Chicago board and builds an agenda, in real Chromium."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from playwright.sync_api import Browser, expect

from .conftest import Server, clock, log_in, login_token

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHICAGO = ZoneInfo("America/Chicago")


def _api(server: Server, path: str, token: str) -> Any:
    req = urllib.request.Request(
        f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def test_coordinator_schedules_board_builds_agenda_and_downloads_ics(
    server: Server, browser: Browser
) -> None:
    context = browser.new_context(
        timezone_id="Asia/Shanghai", locale="en-US", accept_downloads=True
    )
    page = context.new_page()
    log_in(page, server, "coordinator")
    expect(page.get_by_test_id("new-board-form")).to_be_visible()

    # A new board in America/Chicago, weekly on Wednesdays at 07:30 board time.
    page.get_by_test_id("board-name").fill("E2E Thoracic Board")
    page.get_by_test_id("board-timezone").fill("America/Chicago")
    page.get_by_test_id("board-weekday").select_option("WE")
    page.get_by_test_id("board-start-time").fill("07:30")
    page.get_by_test_id("board-duration").fill("60")
    page.get_by_test_id("board-submit").click()
    # Creating a board opens its calendar.
    page.wait_for_url(re.compile(r".*#/boards/\d+$"))

    token = login_token(server, "coordinator")
    boards = _api(server, "/api/boards?tz=Asia/Shanghai", token)["items"]
    created = next(b for b in boards if b["name"] == "E2E Thoracic Board")
    first_utc = datetime.fromisoformat(
        created["next_session"]["start"]["utc"].replace("Z", "+00:00")
    )
    assert first_utc.astimezone(CHICAGO).strftime("%a %H:%M") == "Wed 07:30"

    assert page.url.endswith(f"#/boards/{created['id']}")

    # Its calendar shows each session in the viewer's zone and the board's zone side by side.
    first = page.get_by_test_id("session-row").first
    expect(first).to_be_visible()
    expect(first.get_by_test_id("session-board-time")).to_contain_text(clock(first_utc, CHICAGO))
    expect(first.get_by_test_id("session-viewer-time")).to_contain_text(clock(first_utc, SHANGHAI))
    # 07:30 in Chicago is 20:30 or 21:30 in Shanghai, never the same wall clock.
    assert clock(first_utc, SHANGHAI) in ("8:30", "9:30")

    # The demo board's next session: add the ready case to its agenda.
    demo = next(b for b in boards if b["name"] == "Thoracic MDT")
    session = demo["next_session"]
    page.goto(f"{server.url}/#/sessions/{session['id']}")
    picker = page.get_by_test_id("agenda-add-case")
    expect(picker).to_be_visible()
    picker.select_option(label=picker.locator("option", has_text="HZ-").first.inner_text())
    page.get_by_test_id("agenda-add-timebox").fill("20")
    page.get_by_test_id("agenda-add-submit").click()
    item = page.get_by_test_id("agenda-item")
    expect(item).to_have_count(1)
    expect(item.first).to_contain_text("HZ-")
    agenda = _api(server, f"/api/sessions/{session['id']}/agenda", token)
    assert [(i["case_id"], i["timebox_minutes"]) for i in agenda["items"]] == [(1, 20)]

    # The session's .ics parses back to the same UTC instant.
    with page.expect_download() as info:
        page.get_by_test_id("session-ics").first.click()
    cal = icalendar.Calendar.from_ical(open(info.value.path(), "rb").read())
    event = next(iter(cal.walk("VEVENT")))
    start = event.decoded("dtstart")
    assert str(start.tzinfo) == "America/Chicago"
    expected = datetime.fromisoformat(session["start"]["utc"].replace("Z", "+00:00"))
    assert start.astimezone(UTC) == expected
    context.close()
