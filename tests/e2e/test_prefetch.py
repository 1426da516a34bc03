"""Issue #14, images: joining a session prefetches the agenda case's frames as JPEG-LS lossless,
from the middle slice outward, paced under the default share (600 kbit/s); when the case is
then presented, its image is already in Cornerstone's cache (no frame request) and shows the
stored pixels exactly.

Real server (`python -m server demo`), real Chromium; requests seen through Playwright's request
events, the server's transcoded-frame store on disk."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, Response, Route, expect

from .conftest import Server, api_call, log_in, login_token

JLS = "1.2.840.10008.1.2.4.80"
RATE = 600_000  # bits per second: prefetch's default share
BURST_BYTES = RATE / 8 * 0.5  # what prefetch may send at once (client/src/viewer/prefetch.js)
PROGRESS = "() => window.__eboard.room.prefetch?.progress ?? null"


@dataclass
class Frames:
    """The frame requests one page made: (time, URL, Accept), and the parts' types received."""

    requests: list[tuple[float, str, str]] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    paces: list[str | None] = field(default_factory=list)  # X-Eboard-Pace of each request

    def request(self, request: Request) -> None:
        if "/frames/" in request.url:
            accept = request.header_value("accept") or ""
            self.requests.append((time.monotonic(), request.url, accept))
            self.paces.append(request.header_value("x-eboard-pace"))

    def response(self, response: Response) -> None:
        if "/frames/" in response.url:
            self.answers[response.url] = response.header_value("content-type") or ""


def _metadata(server: Server, token: str, info: dict[str, Any]) -> list[dict[str, Any]]:
    path = (
        f"/dicom-web/studies/{info['study_instance_uid']}/series/"
        f"{info['series_instance_uid']}/metadata"
    )
    result: list[dict[str, Any]] = api_call(server, "GET", path, token)
    return result


def _native_frame(server: Server, token: str, url: str) -> np.ndarray:
    """A frame as stored (native), decoded as little-endian unsigned 16-bit."""
    req = urllib.request.Request(
        url,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "multipart/related; type=application/octet-stream",
        },
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    head, _, rest = body.partition(b"\r\n\r\n")
    data = rest[: rest.rindex(b"\r\n--")]
    return np.frombuffer(data, dtype="<u2")


@dataclass
class Chair:
    """The chair's page in the room, with what it asked for and any page errors."""

    context: BrowserContext
    page: Page
    frames: Frames
    errors: list[str]


def _chair_page(browser: Browser) -> Chair:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.add_init_script("localStorage.setItem('eboard.debug', '1')")
    page = context.new_page()
    chair = Chair(context, page, Frames(), [])
    page.on("pageerror", lambda e: chair.errors.append(str(e)))
    page.on("request", chair.frames.request)
    page.on("response", chair.frames.response)
    return chair


def _enter(chair: Chair, server: Server, session_id: int) -> None:
    log_in(chair.page, server, "chair")
    expect(chair.page.get_by_test_id("current-user")).to_be_visible()
    chair.page.goto(f"{server.url}/#/sessions/{session_id}")
    chair.page.get_by_test_id("join-room").click()
    chair.page.wait_for_function("() => window.__eboard?.live?.phase === 'live'", timeout=20_000)


def _present(page: Page, item_id: int) -> None:
    """The chair brings the case up (unless it still is, from a test before: the live session
    outlives it) and presents; back once the viewer shows the presenter's view."""
    page.evaluate(
        "(id) => window.__eboard.live.snapshot.agenda.current === id"
        " || window.__eboard.live.moveAgenda(id)",
        item_id,
    )
    me = page.evaluate("window.__eboard.live.me.id")
    page.evaluate(f"window.__eboard.live.present({me!r})")
    expect(page.locator(".room-viewer-host")).to_have_attribute("data-ready", "1", timeout=30_000)


@pytest.fixture(scope="module")
def agenda(server: Server) -> Iterator[dict[str, Any]]:
    coordinator = login_token(server, "coordinator")
    boards = api_call(server, "GET", "/api/boards?tz=UTC", coordinator)["items"]
    board = next(b for b in boards if b["name"] == "Thoracic MDT")
    session_id = int(board["next_session"]["id"])
    cases = api_call(server, "GET", f"/api/cases?board_id={board['id']}&state=ready", coordinator)
    case = cases["items"][0]
    items = api_call(server, "GET", f"/api/sessions/{session_id}/agenda", coordinator)["items"]
    item = next((i for i in items if i["case_id"] == case["id"]), None)
    if item is None:
        item = api_call(
            server,
            "POST",
            f"/api/sessions/{session_id}/agenda",
            coordinator,
            {"case_id": case["id"], "timebox_minutes": 15, "lane": "discussion"},
        )
        items.append(item)
    chair = login_token(server, "chair")
    series = {
        i["case_id"]: api_call(server, "GET", f"/api/cases/{i['case_id']}/imaging", chair)["series"]
        for i in items
    }
    yield {"session": session_id, "item": item, "items": items, "series": series, "token": chair}


def test_joining_prefetches_the_agenda_as_jpeg_ls_and_the_presented_image_is_cached(
    server: Server, browser: Browser, agenda: dict[str, Any]
) -> None:
    chair = _chair_page(browser)
    page, frames, errors = chair.page, chair.frames, chair.errors
    try:
        _enter(chair, server, agenda["session"])

        # Every image of every series of the agenda's cases, each once.
        first_case = agenda["items"][0]["case_id"]
        infos = [info for item in agenda["items"] for info in agenda["series"][item["case_id"]]]
        metadata = {info["alias"]: _metadata(server, agenda["token"], info) for info in infos}
        expected = sum(len(m) for m in metadata.values())
        assert expected >= 24  # the demo CT: two series of 12
        page.wait_for_function(
            "(n) => { const p = window.__eboard.room.prefetch?.progress;"
            " return p && p.done && p.fetched + p.skipped >= n; }",
            arg=expected,
            polling=100,
            timeout=90_000,
        )
        progress = page.evaluate(PROGRESS)
        assert progress["failed"] == 0 and progress["planned"] == expected, progress
        urls = [url for _, url, _ in frames.requests]
        assert len(urls) == len(set(urls)) == progress["fetched"] == expected
        # Asked for as JPEG-LS lossless, and sent so (the native series transcoded).
        assert all(JLS in accept for _, _, accept in frames.requests)
        # Each reply paced by the server at its share of the prefetch rate (two in flight):
        # a steady flow into a thin link, no bursts.
        assert frames.paces == [str(RATE // 2)] * len(urls), frames.paces
        assert all(
            'type="image/jls"' in frames.answers[url] or "type=image/jls" in frames.answers[url]
            for url in urls
        ), frames.answers
        native = [i for i in infos if "JPEG-LS" not in i["description"]]
        kept = list((server.data_dir / "imaging" / "jls").rglob("*.jls"))
        assert len(kept) == sum(len(metadata[i["alias"]]) for i in native)

        # The first case's first series first, from its middle image outward.
        first = agenda["series"][first_case][0]
        number = {
            m["00080018"]["Value"][0]: int(m["00200013"]["Value"][0])
            for m in metadata[first["alias"]]
        }
        middle = first["instances"] // 2 + 1
        asked = [number.get(url.split("/instances/")[1].split("/")[0]) for url in urls[:5]]
        # (Two requests go out at once; the loader may send a pair in either order.)
        assert asked[0] == middle and set(asked) == set(range(middle - 2, middle + 3)), asked

        # Paced: never above the share (a half-second burst aside), and the pacing did run.
        elapsed = frames.requests[-1][0] - frames.requests[0][0]
        assert progress["bytes"] > 0
        largest = progress["bytes"] / progress["fetched"] * 3
        assert progress["bytes"] - BURST_BYTES - 2 * largest <= RATE / 8 * (elapsed + 1.0)
        assert elapsed >= (progress["bytes"] - BURST_BYTES - 2 * largest) / (RATE / 8) - 0.5

        # The chair opens the case and presents: the image is on screen without a frame request.
        asked_before = len(frames.requests)
        _present(page, int(agenda["item"]["id"]))
        page.wait_for_function(
            "() => window.__eboard.room.viewer?.cells[0].viewport?.getCurrentImageId()",
            polling=50,
            timeout=20_000,
        )
        shown = page.evaluate(
            """() => {
              const viewport = window.__eboard.room.viewer.cells[0].viewport;
              const image = viewport.csImage;
              return {id: viewport.getCurrentImageId(), scaled: Boolean(image.preScale?.scaled),
                      syntax: image.transferSyntaxUID, pixels: Array.from(image.getPixelData())};
            }"""
        )
        assert len(frames.requests) == asked_before, frames.requests[asked_before:]
        assert shown["syntax"] == JLS
        stored = _native_frame(server, agenda["token"], shown["id"].removeprefix("wadors:"))
        expected_pixels = stored.astype(np.int32) - (1024 if shown["scaled"] else 0)
        assert np.array_equal(np.array(shown["pixels"], dtype=np.int32), expected_pixels)
        assert not errors, errors
    finally:
        chair.context.close()


def test_an_image_shown_while_prefetch_paces_it_is_fetched_again_unpaced(
    server: Server, browser: Browser, agenda: dict[str, Any]
) -> None:
    """The presenter turns to an image that prefetch is fetching at its pace: that paced
    request is aborted and the viewer's own goes out without a pace, rather than the viewer
    waiting for the slow reply (on a thin link: 9-24 s a slice). The paced replies are held
    back here (routed, never answered) as a thin link would hold them: these small test frames
    would otherwise arrive, even at 64 kbit/s, before the presenter turns to them."""
    chair = _chair_page(browser)
    page, frames, errors = chair.page, chair.frames, chair.errors
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url) if "/frames/" in r.url else None)
    held: list[Route] = []

    def hold_paced(route: Route) -> None:
        if route.request.header_value("x-eboard-pace"):
            held.append(route)
        else:
            route.continue_()

    page.route("**/frames/*", hold_paced)
    try:
        _enter(chair, server, agenda["session"])
        _present(page, int(agenda["item"]["id"]))
        # Prefetch goes on outward from the image shown; its requests are held on their way.
        # (Counted in flight before the browser sends it: wait for the request itself.)
        deadline = time.monotonic() + 20
        while not any(frames.paces):
            assert time.monotonic() < deadline, f"no paced request: {frames.paces}"
            page.wait_for_timeout(50)
        asked = [
            (url, pace) for (_, url, _), pace in zip(frames.requests, frames.paces, strict=True)
        ]
        paced = [url for url, pace in asked if pace]
        assert paced, frames.paces
        target = paced[-1]
        sop = target.split("/instances/")[1].split("/")[0]
        # Its series (a thumbnail's image may be another series') and place in it.
        for info in agenda["series"][agenda["item"]["case_id"]]:
            order = [
                m["00080018"]["Value"][0]
                for m in sorted(
                    _metadata(server, agenda["token"], info),
                    key=lambda m: int(m["00200013"]["Value"][0]),
                )
            ]
            if sop in order:
                alias, index = info["alias"], order.index(sop)
                break
        else:
            raise AssertionError(f"{sop} is in none of the case's series")
        page.evaluate(
            """([series, index]) => {
              const viewer = window.__eboard.room.viewer;
              const viewport = { ...viewer.state.viewports[0], series, index };
              return viewer.apply({ viewports: { 0: viewport } });
            }""",
            [alias, index],
        )
        page.wait_for_function(
            "(url) => window.__eboard.room.viewer.cells[0].viewport"
            "?.getCurrentImageId() === `wadors:${url}`",
            arg=target,
            polling=50,
            timeout=20_000,
        )
        asked = [
            (url, pace) for (_, url, _), pace in zip(frames.requests, frames.paces, strict=True)
        ]
        again = [pace for url, pace in asked if url == target]
        assert len(again) == 2 and again[0] and again[1] is None, asked  # paced, then not
        assert target in failed  # the paced one was aborted
        progress = page.evaluate(PROGRESS)
        # (The image the presenter's viewer opened first may have been taken over so too.)
        taken = {url for url, pace in asked if pace is None} & {url for url, pace in asked if pace}
        assert target in taken and set(failed) == taken, (asked, failed)
        # The first image may also have been taken over before its paced request went out:
        # aborted as it goes out, the network never sees it (promoted once more).
        assert progress["promoted"] in (len(taken), len(taken) + 1), (progress, taken)
        assert progress["failed"] == 0, progress
        assert not errors, errors
    finally:
        page.unroute("**/frames/*")
        chair.context.close()
