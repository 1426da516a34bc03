"""The presenter shares a screen and a participant without camera or microphone still sees and
hears the board, in real Chromium through the real server and its SFU."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from .conftest import CHROMIUM, CHROMIUM_FLAGS, Server
from .test_room import Member, _join, _next_session_with_ready_case, _wait_playing

# In the page: the stage's size once it shows `participant`'s screen and has presented `frames`
# more frames of it than when this wait first saw it.
STAGE_PLAYING = """
({participant, frames}) => {
  const video = document.querySelector('[data-testid="room-stage"]');
  const stream = video?.srcObject;
  if (!stream || video.dataset.participant !== participant) return false;
  const seen = (window.__stageFrames ??= new WeakMap());
  const presented = video.getVideoPlaybackQuality().totalVideoFrames;
  if (!seen.has(stream)) seen.set(stream, presented);
  const playing = !video.paused && video.videoWidth > 0 && presented - seen.get(stream) >= frames;
  return playing ? {width: video.videoWidth, height: video.videoHeight} : false;
}
"""

# In the page: how many audio packets each remote participant's stream has received so far,
# by the participant the tile shows (the down connection's inbound audio, matched by track).
AUDIO_PACKETS = """
async () => {
  const live = window.__eboard.live;
  const packets = {};
  (await live.down.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
    packets[s.trackIdentifier] = s.packetsReceived;
  });
  const found = {};
  for (const video of document.querySelectorAll('[data-testid="room-video-remote"]')) {
    for (const track of video.srcObject?.getAudioTracks() ?? []) {
      found[video.dataset.participant] = track.muted ? -1 : (packets[track.id] ?? 0);
    }
  }
  return found;
}
"""


@pytest.fixture(scope="module")
def denying_browser(playwright: Playwright) -> Iterator[Browser]:
    """Chromium that refuses camera and microphone: without --use-fake-ui-for-media-stream,
    Playwright answers the permission prompt with no, as a participant who declines does."""
    flags = [f for f in CHROMIUM_FLAGS if f != "--use-fake-ui-for-media-stream"]
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def board(
    server: Server, browser: Browser, denying_browser: Browser
) -> Iterator[dict[str, Member]]:
    session_id, _ = _next_session_with_ready_case(server)
    members = {
        "chair": _join(browser, server, "chair", session_id),
        "surgeon": _join(browser, server, "surgeon", session_id),
        "watcher": _join(denying_browser, server, "radiologist", session_id),
    }
    yield members
    for member in members.values():
        member.context.close()


def _you(page: Page) -> str:
    page.wait_for_function("() => window.__eboard?.live?.phase === 'live'", timeout=20_000)
    return str(page.evaluate("window.__eboard.live.you"))


def _wait_stage(page: Page, participant: str, frames: int = 5) -> dict[str, int]:
    handle = page.wait_for_function(
        STAGE_PLAYING,
        arg={"participant": participant, "frames": frames},
        polling=50,
        timeout=20_000,
    )
    return dict(handle.json_value())


def test_watch_only_participant_sees_and_hears_the_others(board: dict[str, Member]) -> None:
    chair, surgeon, watcher = board["chair"].page, board["surgeon"].page, board["watcher"].page
    watcher_id = _you(watcher)
    assert watcher.evaluate("window.__eboard.live.local") is None  # the browser said no
    expect(watcher.get_by_test_id("room-watch-only")).to_be_visible()
    expect(watcher.get_by_test_id("room-mute")).to_be_disabled()

    _wait_playing(watcher, count=2)
    # Both others' microphones reach the watcher: packets keep arriving on each audio track.
    before = watcher.evaluate(AUDIO_PACKETS)
    assert sorted(before) == sorted([_you(chair), _you(surgeon)]), before
    watcher.wait_for_timeout(1500)
    after = watcher.evaluate(AUDIO_PACKETS)
    assert all(after[p] > before[p] > 0 for p in before), (before, after)

    # The others are offered the watcher's tracks, which never send: no frozen picture, the
    # tile shows the watcher's initials instead.
    for page in (chair, surgeon):
        tile = page.locator(f'[data-testid="room-tile"][data-participant="{watcher_id}"]')
        expect(tile).to_have_class(re.compile(r"\bcamera-off\b"))
        expect(tile).to_contain_text("Dr. Chen Jie")
        playing = page.locator('[data-testid="room-tile"]:not(.camera-off)')
        expect(playing).to_have_count(2)  # our own camera and the other camera


def test_presenter_shares_a_screen_that_the_others_see_on_the_stage(
    board: dict[str, Member],
) -> None:
    chair, surgeon, watcher = board["chair"].page, board["surgeon"].page, board["watcher"].page
    surgeon_id = _you(surgeon)
    share = surgeon.get_by_test_id("room-share")
    expect(share).to_be_disabled()  # only the presenter shares
    expect(chair.get_by_test_id("room-stage")).to_be_hidden()

    chair.locator(f'[data-testid="room-presenter"][data-participant="{surgeon_id}"]').click()
    expect(share).to_be_enabled()
    share.click()  # the fake screen picker chooses the screen
    expect(share).to_have_attribute("data-active", "true")
    hint = surgeon.evaluate("window.__eboard.live.screen.getVideoTracks()[0].contentHint")
    assert hint == "detail"

    for page in (chair, watcher):
        size = _wait_stage(page, surgeon_id)
        # The stage plays the screen (1280×720 from Chromium's fake capture), not the camera,
        # which is capped at 360 lines.
        assert size["height"] > 360, size
        expect(page.get_by_test_id("room-stage-label")).to_have_text(
            "Dr. Zhao Lei is sharing their screen"
        )
    expect(surgeon.get_by_test_id("room-stage-label")).to_have_text("You are sharing your screen")
    # The republish that added the screen kept everyone's camera tiles playing.
    _wait_playing(watcher, count=2)
    _wait_stage(chair, surgeon_id, frames=10)  # and the screen keeps coming

    share.click()
    expect(share).to_have_attribute("data-active", "false")
    for page in (chair, watcher, surgeon):
        expect(page.get_by_test_id("room-stage")).to_be_hidden()
    _wait_playing(watcher, count=2)
