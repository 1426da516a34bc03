"""A Rochester specialist joins the Hangzhou board through an invitation link, in real Chromium."""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, Locator, Page, expect

from .conftest import Server, clock, log_in, login_token

CHICAGO = ZoneInfo("America/Chicago")
DEMO_BOARD = 1
READY_CASE = 1
# The ready demo case's patient: name, MRN, birth date (ISO, as en-US shows it, its year).
PATIENT_DETAILS = ("Wang Fang", "HZ00012345", "1961-03-02", "Mar 2, 1961", "1961")


def _invitation_url(server: Server) -> str:
    """A fresh invitation to the demo board, created through the API."""
    req = urllib.request.Request(
        f"{server.url}/api/boards/{DEMO_BOARD}/invitations",
        method="POST",
        data=json.dumps({"institution_id": 2, "specialty": "radiology"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {login_token(server, 'coordinator')}",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.load(resp)["url"])


def _error_next_to(page: Page, testid: str) -> Locator:
    """The error shown in the form field that holds the control `testid`."""
    return page.locator(".field", has=page.get_by_test_id(testid)).get_by_test_id("error")


def test_invited_specialist_joins_board_and_sees_the_case_only_deidentified(
    server: Server, browser: Browser
) -> None:
    # The coordinator in Hangzhou creates the invitation on the board's calendar.
    coordinator = browser.new_context(timezone_id="Asia/Shanghai", locale="en-US")
    page = coordinator.new_page()
    log_in(page, server, "coordinator")
    page.get_by_test_id("board-link").filter(has_text="Thoracic MDT").click()
    page.wait_for_url(re.compile(rf".*#/boards/{DEMO_BOARD}$"))
    page.get_by_test_id("invite-institution").select_option(label="Rochester Cancer Center")
    page.get_by_test_id("invite-specialty").select_option("radiation_oncology")
    page.get_by_test_id("invite-email").fill("dr.rochester@roc.example")
    page.get_by_test_id("invite-submit").click()
    link_box = page.get_by_test_id("invite-link")
    expect(link_box).to_have_value(re.compile(rf"/#/join/{DEMO_BOARD}\?token=[\w.-]+$"))
    expect(link_box).not_to_be_editable()
    link = link_box.input_value()
    assert link.startswith(f"{server.url}/#/join/{DEMO_BOARD}?token=")
    coordinator.close()

    # The specialist in Chicago, not logged in, opens the link.
    specialist = browser.new_context(timezone_id="America/Chicago", locale="en-US")
    page = specialist.new_page()
    with page.expect_response(lambda r: "/api/invitations/" in r.url) as shown:
        page.goto(link)
    expect(page.get_by_test_id("join-board-name")).to_have_text("Thoracic MDT")
    expect(page.get_by_test_id("join-institution")).to_have_text("Rochester Cancer Center")
    expect(page.get_by_test_id("join-specialty")).to_have_text("Radiation oncology")
    expires = datetime.fromisoformat(shown.value.json()["expires_at"])
    expect(page.get_by_test_id("join-expires")).to_contain_text(clock(expires, CHICAGO))

    page.get_by_test_id("join-display-name").fill("Dr. Alex Morgan")
    page.get_by_test_id("join-username").fill("dr.rochester")
    page.get_by_test_id("join-password").fill("rochester-tumor-board")
    page.get_by_test_id("join-password2").fill("rochester-tumor-board")
    page.get_by_test_id("join-submit").click()

    # Joining logs the specialist in and shows their boards.
    page.wait_for_url(re.compile(r".*#/boards$"))
    expect(page.get_by_test_id("current-user")).to_contain_text("Dr. Alex Morgan")
    expect(page.get_by_test_id("board-link").filter(has_text="Thoracic MDT")).to_be_visible()

    # The ready case is open to them, without anything that identifies the patient.
    page.goto(f"{server.url}/#/cases/{READY_CASE}")
    expect(page.get_by_test_id("case-deidentified")).to_be_visible()
    expect(page.get_by_test_id("case-number")).to_contain_text("HZ-")
    text = page.locator("body").inner_text()
    payload = specialist.request.get(f"{server.url}/api/cases/{READY_CASE}").text()
    for detail in PATIENT_DETAILS:
        assert detail not in text
        assert detail not in payload

    # The link worked once.
    page.goto(link)
    expect(page.get_by_test_id("join-invalid")).to_contain_text("already been used")
    expect(page.get_by_test_id("join-username")).to_have_count(0)
    specialist.close()


def test_tampered_invitation_link_shows_invalid_notice_not_login(
    server: Server, browser: Browser
) -> None:
    link = _invitation_url(server)
    token = link.rsplit("=", 1)[1]
    # Every one of the last six characters differs, so the signature's bytes do.
    tampered = link[:-6] + "".join("Q" if c == "A" else "A" for c in token[-6:])
    context = browser.new_context(timezone_id="America/Chicago", locale="en-US")
    page = context.new_page()
    page.goto(link)
    expect(page.get_by_test_id("join-board-name")).to_have_text("Thoracic MDT")

    page.goto(tampered)
    expect(page.get_by_test_id("join-invalid")).to_contain_text("not valid or has expired")
    expect(page.get_by_test_id("join-username")).to_have_count(0)
    # Without a session, the refused link is not mistaken for an expired login.
    assert "#/join/" in page.url
    context.close()


def test_join_form_shows_each_error_next_to_its_field_and_keeps_the_invitation(
    server: Server, browser: Browser
) -> None:
    link = _invitation_url(server)
    context = browser.new_context(timezone_id="America/Chicago", locale="en-US")
    page = context.new_page()
    page.goto(link)
    page.get_by_test_id("join-display-name").fill("Dr. Sam Lee")
    page.get_by_test_id("join-username").fill("dr.lee")

    # Passwords that differ never reach the server.
    page.get_by_test_id("join-password").fill("first-password")
    page.get_by_test_id("join-password2").fill("second-password")
    page.get_by_test_id("join-submit").click()
    expect(_error_next_to(page, "join-password2")).to_contain_text("not the same")

    # The server's refusals: a short password, then a username already taken.
    page.get_by_test_id("join-password").fill("short")
    page.get_by_test_id("join-password2").fill("short")
    page.get_by_test_id("join-submit").click()
    expect(_error_next_to(page, "join-password")).to_contain_text("at least 8")
    expect(_error_next_to(page, "join-password2")).to_have_count(0)

    page.get_by_test_id("join-username").fill("coordinator")
    page.get_by_test_id("join-password").fill("long-enough-password")
    page.get_by_test_id("join-password2").fill("long-enough-password")
    page.get_by_test_id("join-submit").click()
    expect(_error_next_to(page, "join-username")).to_contain_text("taken")

    # None of the failed attempts used the invitation up.
    page.reload()
    expect(page.get_by_test_id("join-board-name")).to_have_text("Thoracic MDT")
    context.close()
