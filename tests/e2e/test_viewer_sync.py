"""Issue #4, done when: in a live session, the radiologist presents the demo CT; the chair and an
external expert (de-identified copy) follow. The presenter scrolls, changes window/level, zooms,
pans and draws a length measurement with the mouse; after each, both followers hold the
presenter's view state and exactly the presenter's canvas pixels, within 200 ms of the presenter
sending it (each page's own clock: one clock on one machine). Everything the external
follower received (HTTP bodies and socket.io frames) is searched for the demo patient's identity
and original UIDs.

Real server (`python -m server demo`), real SFU, real Chromium with fake camera and microphone,
Cornerstone drawing on the CPU (no GPU here)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, WebSocket, expect

from .conftest import Server, api_call, log_in, login_token

SYNC_LIMIT_MS = 200
STEPS = ("open", "scroll", "scroll", "window/level", "zoom", "pan", "length")
VIEWPORT = {"width": 1280, "height": 900}
# The demo patient (server/demo.py).
PATIENT = ("Wang^Fang", "Wang Fang", "HZ00012345", "1961-03-02", "19610302")

# In the page: the presenter's last sent state {seq, at}.
SENT = "window.__eboard.room.sync.timeline.at(-1) ?? null"
# In the page: when the follower first had state `seq` (or a later one) on screen.
SHOWN = "(seq) => window.__eboard.room.sync.timeline.find((e) => e.seq >= seq)?.at ?? false"
# In the page: a hash of every RGBA byte of cell 0's canvas (Cornerstone's 2D output canvas).
PIXELS = """
() => {
  const canvas = document.querySelector('.viewer-cell[data-cell="0"] canvas.cornerstone-canvas');
  if (!canvas || canvas.width === 0) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0;
  const levels = new Set();
  for (let i = 0; i < data.length; i += 1) hash = (Math.imul(hash, 31) + data[i]) >>> 0;
  for (let i = 0; i < data.length; i += 4) levels.add(data[i]);
  return `${canvas.width}x${canvas.height}:${hash}:${levels.size}`;
}
"""


@dataclass
class Member:
    username: str
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    frames: list[str | bytes] = field(default_factory=list)

    def pixels(self) -> str | None:
        value = self.page.evaluate(PIXELS)
        return None if value is None else str(value)

    def state(self) -> Any:
        return self.page.evaluate("window.__eboard.room.viewer?.state ?? null")

    def cell(self) -> Any:
        return self.page.locator('.viewer-cell[data-cell="0"]')

    def ready(self) -> None:
        self.page.wait_for_timeout(30)
        expect(self.page.locator(".room-viewer-host")).to_have_attribute(
            "data-ready", "1", timeout=20_000
        )


def _join(
    browser: Browser, server: Server, username: str, session_id: int, *, record: bool = False
) -> Member:
    """Log in, open the session and join its room; `record`: keep everything received from the
    login on (see `_record`)."""
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", device_scale_factor=1)
    context.add_init_script("localStorage.setItem('eboard.debug', '1')")
    page = context.new_page()
    member = Member(username, context, page)
    if record:
        _record(member)
    log_in(page, server, username)
    expect(page.get_by_test_id("current-user")).to_be_visible()
    page.on("console", lambda m: member.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: member.errors.append(str(e)))
    page.goto(f"{server.url}/#/sessions/{session_id}")
    page.get_by_test_id("join-room").click()
    expect(page.get_by_test_id("room")).to_be_visible()
    return member


def _record(member: Member) -> None:
    """Keep every HTTP response body and every socket.io frame this member receives."""

    def response(resp: Response) -> None:
        try:
            member.bodies.append((resp.url, resp.body()))
        except Exception:  # a redirect or an aborted request has no body
            pass

    def websocket(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: member.frames.append(payload))

    member.page.on("response", response)
    member.page.on("websocket", websocket)


@pytest.fixture(scope="module")
def room(server: Server, browser: Browser) -> Iterator[dict[str, Any]]:
    coordinator = login_token(server, "coordinator")
    boards = api_call(server, "GET", "/api/boards?tz=UTC", coordinator)["items"]
    board = next(b for b in boards if b["name"] == "Thoracic MDT")
    session_id = int(board["next_session"]["id"])
    cases = api_call(server, "GET", f"/api/cases?board_id={board['id']}&state=ready", coordinator)
    case = cases["items"][0]
    agenda = api_call(server, "GET", f"/api/sessions/{session_id}/agenda", coordinator)["items"]
    item = next((i for i in agenda if i["case_id"] == case["id"]), None)
    if item is None:
        item = api_call(
            server,
            "POST",
            f"/api/sessions/{session_id}/agenda",
            coordinator,
            {"case_id": case["id"], "timebox_minutes": 15, "lane": "discussion"},
        )
    radiologist = login_token(server, "radiologist")
    series = api_call(server, "GET", f"/api/cases/{case['id']}/imaging", radiologist)["series"]

    chair = _join(browser, server, "chair", session_id)
    expect(chair.page.get_by_test_id("room-participant")).to_have_count(1)
    external = _join(browser, server, "external", session_id, record=True)
    # The chair admits the guest from the lobby.
    chair.page.get_by_test_id("room-lobby-admit").first.click()
    presenter = _join(browser, server, "radiologist", session_id)
    members = {"chair": chair, "radiologist": presenter, "external": external}
    for member in members.values():
        expect(member.page.get_by_test_id("room-participant")).to_have_count(3, timeout=20_000)
    # Each has prefetched the agenda's images (paced at its default share), as a board that
    # joins before the case comes up has: the latencies below are those of following.
    for member in members.values():
        member.page.wait_for_function(
            "() => window.__eboard.room.prefetch?.progress.done", polling=100, timeout=60_000
        )
    # The chair opens the case and makes the radiologist the presenter.
    chair.page.evaluate(f"window.__eboard.live.moveAgenda({int(item['id'])})")
    chair.page.evaluate("window.__eboard.live.present('u4')")
    yield {"members": members, "series": series, "case": case, "session": session_id}
    for member in members.values():
        member.context.close()


def _followed(
    presenter: Member, followers: list[Member], what: str, latency: dict[str, list[float]]
) -> None:
    """After one action of the presenter: every follower shows the same view state, with the
    same canvas pixels; how long after the presenter sent it each had it on screen is recorded.

    Times come from the pages themselves (`performance.timeOrigin + now()`, one clock for every
    page on this machine): the presenter's, when the patch of its final state went out (right
    after the presenter's own render); each follower's, when that state was on its screen."""
    presenter.ready()
    # The presenter has settled: no patch for a while, and the same pixels twice.
    seq, pixels = presenter.page.evaluate(SENT), presenter.pixels()
    while True:
        presenter.page.wait_for_timeout(100)
        again, pixels_again = presenter.page.evaluate(SENT), presenter.pixels()
        if again == seq and pixels_again == pixels:
            break
        seq, pixels = again, pixels_again
    assert seq is not None, f"{what}: the presenter sent nothing"
    assert pixels is not None and int(pixels.rsplit(":", 1)[1]) > 10, f"{what}: blank canvas"
    for follower in followers:
        shown_at = follower.page.wait_for_function(
            SHOWN, arg=seq["seq"], polling=20, timeout=10_000
        ).json_value()
        latency.setdefault(follower.username, []).append(float(shown_at) - seq["at"])
        follower.ready()
        # The presenter may still send a late patch of its own (a first render fitting the
        # image): both are read again until they agree, for up to 5 s; then the pixels must too.
        deadline = time.monotonic() + 5
        while follower.state() != presenter.state() and time.monotonic() < deadline:
            follower.page.wait_for_timeout(50)
        follower.ready()
        assert follower.state() == presenter.state(), (what, follower.username)
        assert follower.pixels() == presenter.pixels(), (what, follower.username)


def test_followers_show_the_presenters_pixels_within_200_ms(room: dict[str, Any]) -> None:
    members: dict[str, Member] = room["members"]
    presenter, chair, external = members["radiologist"], members["chair"], members["external"]
    followers = [chair, external]
    expect(presenter.page.get_by_test_id("room-viewer-status")).to_contain_text(
        "You are presenting"
    )
    for follower in followers:
        expect(follower.page.get_by_test_id("room-viewer-status")).to_contain_text(
            "Dr. Chen Jie", timeout=20_000
        )
    presenter.ready()
    expect(presenter.page.get_by_test_id("viewer-series-item")).to_have_count(len(room["series"]))
    latency: dict[str, list[float]] = {}
    # The presenter's viewer opens the case's first series by itself.
    presenter.page.wait_for_function(
        "() => window.__eboard.room.viewer?.state.viewports[0].series", polling=50, timeout=20_000
    )
    _followed(presenter, followers, "opening the case", latency)

    page = presenter.page
    presenter.cell().scroll_into_view_if_needed()
    for follower in followers:
        follower.cell().scroll_into_view_if_needed()
    box = presenter.cell().bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def drag(tool: str | None, dx: float, dy: float) -> None:
        if tool:
            page.get_by_test_id(f"viewer-tool-{tool}").click()
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + dx, y + dy, steps=8)
        page.mouse.up()

    steps: list[tuple[str, Callable[[], None]]] = [
        ("scrolling", lambda: (page.mouse.move(x, y), page.mouse.wheel(0, 100))),
        ("scrolling again", lambda: page.mouse.wheel(0, 100)),
        ("window/level", lambda: drag("WindowLevel", 40, -25)),
        ("zoom", lambda: drag("Zoom", 0, 50)),
        ("pan", lambda: drag("Pan", 35, -20)),
        ("a length measurement", lambda: drag("Length", -70, 45)),
    ]
    before = presenter.state()
    for what, act in steps:
        act()
        _followed(presenter, followers, what, latency)
    after = presenter.state()
    assert after["viewports"][0]["index"] == before["viewports"][0]["index"] + 2
    assert after["viewports"][0]["voi"] != before["viewports"][0]["voi"]
    assert after["viewports"][0]["presentation"]["zoom"] > 1
    assert after["viewports"][0]["presentation"]["pan"] != [0, 0]
    assert [a["tool"] for a in after["annotations"]] == ["Length"]
    # The measurement itself (drawn as SVG over the canvas) reads the same for everyone.
    label = presenter.cell().locator("svg text").first
    expect(label).to_contain_text("mm")
    for follower in followers:
        expect(follower.cell().locator("svg text").first).to_have_text(label.text_content() or "")

    print(
        f"\npresenter's patch sent → follower showing it (limit asked: {SYNC_LIMIT_MS} ms): "
        + "; ".join(
            f"{n}: "
            + ", ".join(f"{what} {v:.0f}" for what, v in zip(STEPS, latency[n], strict=True))
            for n in latency
        )
    )
    # Every update also came on the down connection's data channel (issue #14), whichever copy
    # was first on this loopback.
    for follower in followers:
        arrived = follower.page.evaluate("window.__eboard.room.sync.arrived")
        via = follower.page.evaluate("window.__eboard.room.sync.via")
        assert arrived["channel"] >= len(STEPS), (follower.username, arrived, via)
        assert via["socket"] + via["channel"] >= len(STEPS), (follower.username, arrived, via)
    # Issue #4: after each of the presenter's actions, both followers within 200 ms. (Opening
    # the case is not one of them: it loads the series over the network first.)
    for name, values in latency.items():
        slow = {what: v for what, v in zip(STEPS, values, strict=True) if what != "open"}
        assert all(v <= SYNC_LIMIT_MS for v in slow.values()), (name, slow)
    for member in members.values():
        assert member.errors == [], (member.username, member.errors)


def test_the_external_follower_received_nothing_identifying(
    server: Server, room: dict[str, Any]
) -> None:
    external: Member = room["members"]["external"]
    radiologist = login_token(server, "radiologist")
    originals: set[str] = set()
    for series in room["series"]:
        study, uid = series["study_instance_uid"], series["series_instance_uid"]
        originals.update((study, uid))
        instances = api_call(
            server, "GET", f"/dicom-web/studies/{study}/series/{uid}/instances", radiologist
        )
        originals.update(i["00080018"]["Value"][0] for i in instances)
    # What was recorded is what the viewer used: the copy's metadata and frames, and the view.
    urls = [url for url, _ in external.bodies]
    assert any(url.endswith("/metadata") for url in urls)
    assert sum("/frames/" in url for url in urls) >= room["series"][0]["instances"]
    assert any(isinstance(f, str) and "view-update" in f for f in external.frames)
    received = [
        *(body for _, body in external.bodies),
        *(f.encode() if isinstance(f, str) else f for f in external.frames),
    ]
    for secret in (*PATIENT, *originals):
        needle = secret.encode()
        hits = [i for i, body in enumerate(received) if needle in body]
        assert not hits, f"{secret!r} reached the external follower ({len(hits)} bodies)"
