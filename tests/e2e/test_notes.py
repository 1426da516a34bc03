"""Issue #5, done when: in a live session, two specialists type into the case's consensus note
(into the same text field at once) and each sees the other's text; the chair finalizes it; the
case page shows the agreed plan with its signature verified (in the browser, against the key
the server publishes)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from .conftest import Server, api_call, log_in, login_token

VIEWPORT = {"width": 1280, "height": 800}


@dataclass
class Member:
    username: str
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    def field(self, path: str) -> Locator:
        return self.page.locator(f'[data-note-panel] [data-field="{path}"]')


def _join(browser: Browser, server: Server, username: str, session_id: int) -> Member:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")
    context.add_init_script("localStorage.setItem('eboard.debug', '1')")  # window.__eboard
    page = context.new_page()
    member = Member(username, context, page)
    page.on("pageerror", lambda e: member.errors.append(str(e)))
    log_in(page, server, username)
    expect(page.get_by_test_id("current-user")).to_be_visible()
    page.goto(f"{server.url}/#/sessions/{session_id}")
    page.get_by_test_id("join-room").click()
    expect(page.get_by_test_id("room")).to_be_visible()
    return member


@pytest.fixture(scope="module")
def board(server: Server, browser: Browser) -> Iterator[dict[str, Any]]:
    """The ready case on the next session's agenda; chair, radiologist and surgeon in the room,
    and the chair has opened the case (so their media joins count as its attendance)."""
    coordinator = login_token(server, "coordinator")
    boards = api_call(server, "GET", "/api/boards?tz=UTC", coordinator)["items"]
    thoracic = next(b for b in boards if b["name"] == "Thoracic MDT")
    session_id = int(thoracic["next_session"]["id"])
    cases = api_call(
        server, "GET", f"/api/cases?board_id={thoracic['id']}&state=ready", coordinator
    )
    case = cases["items"][0]
    item = api_call(
        server,
        "POST",
        f"/api/sessions/{session_id}/agenda",
        coordinator,
        {"case_id": case["id"], "timebox_minutes": 15, "lane": "discussion"},
    )
    members = {
        name: _join(browser, server, name, session_id)
        for name in ("chair", "radiologist", "surgeon")
    }
    for member in members.values():
        expect(member.page.get_by_test_id("room-participant")).to_have_count(3, timeout=20_000)
    members["chair"].page.evaluate(f"window.__eboard.live.moveAgenda({int(item['id'])})")
    yield {"members": members, "case": case}
    for member in members.values():
        member.context.close()


def test_specialists_co_edit_the_chair_finalizes_and_the_case_page_verifies_the_plan(
    board: dict[str, Any], server: Server
) -> None:
    members: dict[str, Member] = board["members"]
    chair, radiologist, surgeon = members["chair"], members["radiologist"], members["surgeon"]
    for member in members.values():
        expect(member.field("rationale")).to_be_editable(timeout=20_000)

    # Both type into the rationale, turn about, each at the end of what they see, without
    # waiting for the other's words to arrive in between.
    radiology = ["Radiology: ", "single-station ", "N1, ", "no N2 on EBUS. "]
    surgery = ["Surgery: ", "resectable ", "by lobectomy, ", "FEV1 78%. "]
    for mine, theirs in zip(radiology, surgery, strict=True):
        radiologist.field("rationale").press("End")
        radiologist.field("rationale").press_sequentially(mine)
        surgeon.field("rationale").press("End")
        surgeon.field("rationale").press_sequentially(theirs)
    surgeon.field("dissent").fill("Radiation oncology would offer chemoradiation first.")

    for member in (radiologist, surgeon, chair):
        for words in ("".join(radiology), "".join(surgery)):
            text = member.field("rationale")
            # Each person's words stay whole and in order, whoever typed in between.
            expect(text).to_have_value(_containing_in_order(words), timeout=10_000)
        expect(member.field("dissent")).to_have_value(
            "Radiation oncology would offer chemoradiation first."
        )
    # Presence: the surgeon sees the radiologist in the field they are in.
    radiologist.field("rationale").focus()
    expect(surgeon.page.locator('[data-note-panel] [data-presence="rationale"]')).to_contain_text(
        "Chen Jie"
    )

    # The chair finalizes too early: each missing field is named, nothing is signed.
    chair.page.locator("[data-note-finalize]").click()
    errors = chair.page.locator("[data-note-errors]")
    expect(errors).to_be_visible()
    for path in ("staging.stage_group", "intent", "recommendations"):
        expect(errors.locator(f'[data-error-field="{path}"]')).to_have_count(1)
    expect(chair.page.locator("[data-note-status]")).not_to_contain_text("inalized")

    # The radiologist completes the coded fields; the chair finalizes.
    radiologist.field("primary_cancer.code").select_option(label="Non-small cell lung cancer")
    radiologist.field("staging.stage_group").select_option(label="Stage IIIA")
    radiologist.field("staging.system").select_option(
        label="AJCC Cancer Staging Manual, 8th edition"
    )
    radiologist.field("intent").select_option(label="Curative")
    radiologist.page.locator('[data-note-panel] [data-note-add="recommendations"]').click()
    radiologist.field("recommendations.0.type").select_option(label="Surgery")
    radiologist.field("recommendations.0.detail").fill("Right upper lobectomy")
    expect(chair.field("recommendations.0.detail")).to_have_value(
        "Right upper lobectomy", timeout=10_000
    )
    chair.page.locator("[data-note-finalize]").click()
    expect(chair.page.locator("[data-note-status]")).to_contain_text("inalized", timeout=10_000)
    # Everyone's note is read-only now.
    for member in (radiologist, surgeon):
        expect(member.field("rationale")).not_to_be_editable(timeout=10_000)

    # The case page shows the agreed plan, its signature checked in the browser.
    case_id = int(board["case"]["id"])
    radiologist.page.goto(f"{server.url}/#/cases/{case_id}")
    plan = radiologist.page.locator("[data-agreed-plan]")
    expect(plan).to_be_visible(timeout=10_000)
    expect(plan).to_contain_text("Right upper lobectomy")
    expect(plan).to_contain_text("Radiation oncology would offer chemoradiation first.")
    status = radiologist.page.locator("[data-signature-status]")
    expect(status).to_have_attribute("data-verified", "true", timeout=10_000)
    expect(status).to_contain_text("verified")

    # The server agrees, and the attendance came from the room's media joins.
    token = login_token(server, "records")
    signed = api_call(server, "GET", f"/api/cases/{case_id}/plan", token)
    assert signed["verified"] is True and signed["state"] == "finalized"
    attended = {a["name"] for a in signed["current"]["attendance"]}
    assert {"Dr. Zhang Wei (chair)", "Dr. Chen Jie", "Dr. Zhao Lei"} <= attended
    rationale = signed["current"]["note"]["rationale"]
    # Signed is what everyone saw: the same text, every character of both, each in order.
    for member in (chair, surgeon):
        assert member.field("rationale").input_value() == rationale
    for words in ("".join(radiology), "".join(surgery)):
        assert _containing_in_order(words).search(rationale), (words, rationale)
    assert len(rationale) == len("".join(radiology + surgery)), rationale
    for member in members.values():
        assert not member.errors, (member.username, member.errors)


def _containing_in_order(words: str) -> Any:
    """A pattern matching any text that holds ``words``'s characters in order (the other
    person's characters may sit between them, as a CRDT merges concurrent typing)."""
    return re.compile(".*".join(re.escape(c) for c in words), re.DOTALL)
