"""The diagnostic viewer on the case page, in real Chromium (software WebGL): it renders the demo
CT from our DICOMweb, answers the mouse and keyboard, and a second participant who is given the
view state (external, on the de-identified copy, in another Chromium) shows the same pixels."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from server.contract import EventContract

from .conftest import CHROMIUM, CHROMIUM_FLAGS, ROOT, Server, log_in, login_token

CONTRACT = EventContract()
VIEW_STATE = Draft202012Validator(json.loads((ROOT / "schemas" / "view-state.json").read_text()))

VIEWPORT = {"width": 1280, "height": 900}
LUNG = {"center": -600, "width": 1500}
MEDIASTINUM = {"center": 50, "width": 350}

# In the page: what cell `n`'s canvas shows — its size, a hash of every RGBA byte and how many
# distinct grey levels it holds. The canvas is Cornerstone's 2D output canvas, always readable.
PIXELS = """
(n) => {
  const canvas = document.querySelector(`.viewer-cell[data-cell="${n}"] canvas.cornerstone-canvas`);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0;
  const levels = new Set();
  for (let i = 0; i < data.length; i += 1) hash = (Math.imul(hash, 31) + data[i]) >>> 0;
  for (let i = 0; i < data.length; i += 4) levels.add(data[i]);
  return {width: canvas.width, height: canvas.height, hash, levels: levels.size};
}
"""

# In the page: the WADO-RS frame URLs fetched so far.
FRAME_REQUESTS = """
() => performance.getEntriesByType('resource')
  .map((e) => e.name)
  .filter((u) => u.includes('/frames/'))
"""


def _valid(state: dict[str, Any]) -> dict[str, Any]:
    """`state`, after checking it against schemas/view-state.json."""
    VIEW_STATE.validate(state)
    return state


@dataclass
class Viewing:
    """A signed-in user on the ready case's page, with the console errors it has logged."""

    page: Page
    errors: list[str]

    def viewer(self, expression: str, arg: Any = None) -> Any:
        """Evaluate `expression` (a function of the viewer and `arg`) in the page."""
        return self.page.evaluate(
            f"async (arg) => ({expression})(window.__eboard.viewer, arg)",
            arg,
        )

    def ready(self) -> None:
        """Wait until every visible cell shows what the view state says."""
        self.page.wait_for_timeout(50)  # a change just asked for has started
        expect(self.page.locator(".viewer")).to_have_attribute("data-ready", "1", timeout=20_000)

    def pixels(self, cell: int = 0) -> dict[str, int]:
        return dict(self.page.evaluate(PIXELS, cell))

    def cell(self, n: int = 0) -> Any:
        return self.page.locator(f'.viewer-cell[data-cell="{n}"]')

    def centre(self, n: int = 0) -> tuple[float, float]:
        box = self.cell(n).bounding_box()
        assert box is not None
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _api(server: Server, path: str, username: str) -> Any:
    req = urllib.request.Request(
        f"{server.url}{path}",
        headers={"Authorization": f"Bearer {login_token(server, username)}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def ready_case(server: Server) -> int:
    cases = _api(server, "/api/cases", "radiologist")
    items = cases["items"] if isinstance(cases, dict) else cases
    return int(next(c["id"] for c in items if c["state"] == "ready"))


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def _open(
    browser: Browser, server: Server, case_id: int, username: str, opened: list[BrowserContext]
) -> Viewing:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", device_scale_factor=1)
    opened.append(context)
    page = context.new_page()
    context.add_init_script("localStorage.setItem('eboard.debug', '1')")  # window.__eboard
    log_in(page, server, username)
    page.wait_for_url("**/#/boards")
    # Errors from here on (before login, the app's /api/me is refused, as it should be).
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}/#/cases/{case_id}")
    viewing = Viewing(page, errors)
    viewing.ready()
    viewing.cell(0).scroll_into_view_if_needed()
    return viewing


def test_viewer_renders_the_case_ct_and_answers_mouse_and_keyboard(
    server: Server, browser: Browser, ready_case: int, contexts: list[BrowserContext]
) -> None:
    v = _open(browser, server, ready_case, "radiologist", contexts)
    series = _api(server, f"/api/cases/{ready_case}/imaging", "radiologist")["series"]
    assert len(series) == 2
    expect(v.page.get_by_test_id("viewer-series-item")).to_have_count(2)

    # The first series, middle image, in the image's own window: a real image, not a blank.
    state = _valid(v.viewer("(v) => v.state"))
    first = series[0]
    assert state["layout"] == "1x1"
    assert state["viewports"][0]["series"] == first["alias"]
    assert state["viewports"][0]["index"] == first["instances"] // 2
    assert state["viewports"][0]["voi"] is None
    default = v.pixels()
    assert default["width"] > 100 and default["levels"] > 10

    # Every image of the series shown is fetched at once (followers never scroll into a blank).
    uid, count = first["series_instance_uid"], first["instances"]
    v.page.wait_for_function(
        f"() => ({FRAME_REQUESTS})().filter((u) => u.includes('{uid}')).length >= {count}"
    )

    # Window presets: mediastinum, then lung (the demo CT's own default window is the lung one).
    v.page.get_by_test_id("viewer-preset").select_option("mediastinum")
    v.ready()
    mediastinum = v.pixels()
    assert mediastinum["hash"] != default["hash"]
    assert v.viewer("(v) => v.state.viewports[0].voi") == MEDIASTINUM
    v.page.get_by_test_id("viewer-preset").select_option("lung")
    v.ready()
    lung = v.pixels()
    assert lung["hash"] != mediastinum["hash"]
    assert lung["hash"] == default["hash"]
    assert v.viewer("(v) => v.state.viewports[0].voi") == LUNG

    # Scrolling: the wheel, then the keyboard, move through the canonical order.
    start = state["viewports"][0]["index"]
    x, y = v.centre()
    v.page.mouse.move(x, y)
    v.page.mouse.wheel(0, 100)
    expect(v.cell(0)).to_have_attribute("data-index", str(start + 1))
    v.page.mouse.click(x, y)  # focuses the images for the keyboard
    v.page.keyboard.press("ArrowDown")
    expect(v.cell(0)).to_have_attribute("data-index", str(start + 2))
    v.page.keyboard.press("End")
    expect(v.cell(0)).to_have_attribute("data-index", str(first["instances"] - 1))
    v.page.keyboard.press("Home")
    expect(v.cell(0)).to_have_attribute("data-index", "0")
    v.ready()
    assert v.viewer("(v) => v.state.viewports[0].index") == 0

    # A Length measurement, drawn with the mouse, is in the view state in world coordinates.
    v.page.keyboard.press("End")
    v.page.get_by_test_id("viewer-tool-Length").click()
    v.page.mouse.move(x - 60, y - 40)
    v.page.mouse.down()
    v.page.mouse.move(x + 40, y + 30, steps=6)
    v.page.mouse.up()
    expect(v.cell(0).locator("svg text").first).to_contain_text("mm")
    annotations = _valid(v.viewer("(v) => v.state"))["annotations"]
    assert len(annotations) == 1
    length = annotations[0]
    assert length["tool"] == "Length" and length["series"] == first["alias"]
    assert length["index"] == first["instances"] - 1
    assert len(length["points"]) == 2 and all(len(p) == 3 for p in length["points"])

    # The 2×2 layout shows four cells; the second gets the other (JPEG-LS) series.
    v.page.get_by_test_id("viewer-layout-2x2").click()
    v.ready()
    expect(v.page.locator(".viewer-cell:visible")).to_have_count(4)
    state = _valid(v.viewer("(v) => v.state"))
    assert state["layout"] == "2x2"
    assert state["viewports"][1]["series"] == series[1]["alias"]
    assert v.pixels(1)["levels"] > 10
    expect(v.cell(2)).to_contain_text("Choose a series")

    assert v.errors == []


def test_external_participant_gets_the_deidentified_copy_in_the_same_order_and_pixels(
    server: Server,
    browser: Browser,
    playwright: Playwright,
    ready_case: int,
    contexts: list[BrowserContext],
) -> None:
    internal = _api(server, f"/api/cases/{ready_case}/imaging", "radiologist")["series"]
    external = _api(server, f"/api/cases/{ready_case}/imaging", "external")["series"]
    # The same series by alias, but other UIDs: the de-identified copy.
    assert [s["alias"] for s in external] == [s["alias"] for s in internal]
    for mine, theirs in zip(internal, external, strict=True):
        assert theirs["series_instance_uid"] != mine["series_instance_uid"]
        assert theirs["study_instance_uid"] != mine["study_instance_uid"]

    v = _open(browser, server, ready_case, "radiologist", contexts)
    # The external participant in a Chromium of their own: the view state must give the same
    # pixels in another process, from another copy.
    other = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    try:
        e = _open(other, server, ready_case, "external", [])
        frames = e.page.evaluate(FRAME_REQUESTS)
        assert frames and all(external[0]["study_instance_uid"] in u for u in frames)
        assert not any(internal[0]["study_instance_uid"] in u for u in frames)

        # The canonical order is the same for both copies: each index is the same slice.
        for index in range(internal[0]["instances"]):
            for viewing in (v, e):
                viewing.viewer(
                    "(v, i) => v.apply({viewports: {'0': {...v.state.viewports[0], index: i}}})",
                    index,
                )
            assert (
                v.page.locator(".viewer-cell-info").first.inner_text()
                == e.page.locator(".viewer-cell-info").first.inner_text()
            )
            assert v.pixels()["hash"] == e.pixels()["hash"]

        # The radiologist changes the view; the external participant follows it exactly.
        x, y = v.centre()
        v.page.get_by_test_id("viewer-tool-Zoom").click()
        v.page.mouse.move(x, y)
        v.page.mouse.down()
        v.page.mouse.move(x, y + 45, steps=5)
        v.page.mouse.up()
        v.page.get_by_test_id("viewer-tool-Pan").click()
        v.page.mouse.move(x, y)
        v.page.mouse.down()
        v.page.mouse.move(x + 33, y - 17, steps=5)
        v.page.mouse.up()
        v.page.get_by_test_id("viewer-action-rotate").click()
        v.page.get_by_test_id("viewer-action-flipHorizontal").click()
        v.page.get_by_test_id("viewer-action-invert").click()
        v.page.get_by_test_id("viewer-preset").select_option("bone")
        v.page.get_by_test_id("viewer-tool-Length").click()
        v.page.mouse.move(x - 50, y)
        v.page.mouse.down()
        v.page.mouse.move(x + 20, y + 20, steps=5)
        v.page.mouse.up()
        v.ready()
        state = _valid(v.viewer("(v) => v.state"))
        assert state["viewports"][0]["presentation"]["zoom"] > 1
        assert len(state["annotations"]) == 1

        e.viewer("(v, s) => { v.setMode('follow'); return v.load(s); }", state)
        e.ready()
        assert e.viewer("(v) => v.state") == state
        assert e.pixels() == v.pixels()
        expect(e.page.get_by_test_id("viewer-look-around")).to_be_visible()
        expect(e.cell(0).locator("svg text").first).to_contain_text("mm")

        # A series withheld from this user is a placeholder in its cell, not a failure.
        withheld = {"0": {**state["viewports"][0], "series": "withheld-series"}}
        e.viewer("(v, viewports) => v.apply({viewports})", withheld)
        e.ready()
        expect(e.cell(0)).to_contain_text("Not shared with external participants")
        assert _valid(e.viewer("(v) => v.state"))["viewports"][0]["series"] == "withheld-series"
        assert e.errors == []
    finally:
        other.close()
    assert v.errors == []


def test_presenter_patches_take_a_follower_to_the_same_view(
    server: Server, browser: Browser, ready_case: int, contexts: list[BrowserContext]
) -> None:
    presenter = _open(browser, server, ready_case, "radiologist", contexts)
    follower = _open(browser, server, ready_case, "surgeon", contexts)
    presenter.viewer(
        """(v) => { v.setMode('present'); window.__patches = []; window.__points = [];
           v.onChange((p) => window.__patches.push(p));
           v.onPointer((cell, point) => window.__points.push([cell, point])); }"""
    )
    follower.viewer(
        "(v, s) => { v.setMode('follow'); return v.load(s); }", presenter.viewer("(v) => v.state")
    )
    follower.ready()

    x, y = presenter.centre()
    presenter.page.mouse.move(x, y)
    presenter.page.mouse.wheel(0, 100)
    presenter.page.mouse.down()  # window/level
    presenter.page.mouse.move(x + 30, y + 20, steps=8)
    presenter.page.mouse.up()
    presenter.page.get_by_test_id("viewer-layout-1x2").click()
    presenter.ready()
    presenter.page.get_by_test_id("viewer-tool-Pointer").click()
    presenter.page.mouse.move(x - 20, y, steps=4)
    presenter.page.wait_for_timeout(200)

    patches = presenter.page.evaluate("window.__patches")
    assert patches, "the presenter's changes produce patches"
    assert all(set(p) <= {"layout", "active", "viewports", "annotations"} for p in patches)
    assert any("layout" in p for p in patches)
    for patch in patches:
        CONTRACT.check("view", {"seq": 1, "patch": patch})  # what the server would accept
        follower.viewer("(v, p) => v.apply(p)", patch)
    follower.ready()
    assert follower.viewer("(v) => v.state") == _valid(presenter.viewer("(v) => v.state"))
    assert follower.pixels(0) == presenter.pixels(0)
    assert follower.pixels(1) == presenter.pixels(1)

    cell, point = presenter.page.evaluate("window.__points")[-1]
    assert cell == 0 and len(point) == 3
    CONTRACT.check("pointer", {"viewport": cell, "point": point})
    follower.viewer("(v, [cell, point]) => v.showPointer(cell, point)", [cell, point])
    expect(follower.cell(0).locator(".viewer-pointer")).to_be_visible()

    # Looking around leaves the presenter's view; following again comes back to it.
    follower.page.get_by_test_id("viewer-look-around").click()
    assert follower.viewer("(v) => v.mode") == "free"
    follower.page.get_by_test_id("viewer-layout-1x1").click()
    follower.ready()
    follower.page.get_by_test_id("viewer-follow").click()
    follower.ready()
    assert follower.viewer("(v) => v.state") == presenter.viewer("(v) => v.state")
    assert presenter.errors == [] and follower.errors == []
