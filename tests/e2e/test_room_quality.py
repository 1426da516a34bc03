"""What the server says about a participant's link reaches that participant's room in real
Chromium: each remote tile shows whether its video comes in full, reduced or paused for
bandwidth (in words, in both languages), and the connection line shows the link estimate. The
server runs in this process (a thread of its own) so the test can hand its signalling a
LinkQuality event exactly as the media plane does. Also: the camera offers three simulcast
layers, and while the server answers one, that one is sent at the full picture."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, expect

from media.events import LinkQuality
from server.__main__ import _ct_size, _demo_seed, parser, settings_from
from server.app import SIGNALLING, create_app

from .conftest import ROOT, Server
from .test_room import Member, _join, _next_session_with_ready_case, _wait_playing


@dataclass
class LiveServer:
    """The demo server on its own event loop in a thread; `send` hands signalling a media event.
    While `hold_real_quality` is set, the media plane's own LinkQuality events are held back,
    so what a test sends is what the page shows."""

    loop: asyncio.AbstractEventLoop
    app: web.Application
    hold_real_quality: bool = False

    def send(self, event: LinkQuality) -> None:
        self.loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: object) -> None:
        type(self.app[SIGNALLING]).on_media_event(self.app[SIGNALLING], event)

    def install(self) -> None:
        signalling = self.app[SIGNALLING]

        def sink(event: object) -> None:
            if not (isinstance(event, LinkQuality) and self.hold_real_quality):
                type(signalling).on_media_event(signalling, event)

        signalling.on_media_event = sink


@contextmanager
def serve_in_thread(data_dir: Path, *options: str) -> Iterator[tuple[Server, LiveServer]]:
    """The demo server (small CT, ``options`` added to its command line) on its own event loop
    in a thread of this process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    args = parser().parse_args(
        ["demo", "--data-dir", str(data_dir), "--port", str(port), "--demo-ct", "4x64", *options]
    )
    settings = settings_from(args)
    # In a thread of its own: Playwright's sync API may be running a loop in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(
            asyncio.run, _demo_seed(settings, args.demo_password, _ct_size(args.demo_ct))
        ).result()
    loop = asyncio.new_event_loop()
    app = create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=3.0)
    started = threading.Event()
    live = LiveServer(loop, app)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        live.install()
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="eboard-server", daemon=True)
    thread.start()
    assert started.wait(60), "the server did not start"
    try:
        yield Server(f"http://127.0.0.1:{port}", Path(data_dir)), live
    finally:

        async def stop() -> None:
            await runner.cleanup()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, LiveServer]]:
    assert (ROOT / "client" / "dist" / "index.html").exists(), "build the client: make client"
    with serve_in_thread(tmp_path_factory.mktemp("e2e-quality")) as served:
        yield served


@pytest.fixture(scope="module")
def pair(
    live_server: tuple[Server, LiveServer], browser: Browser
) -> Iterator[tuple[int, dict[str, Member]]]:
    server, _ = live_server
    session_id, _ = _next_session_with_ready_case(server)
    members = {name: _join(browser, server, name, session_id) for name in ("chair", "surgeon")}
    yield session_id, members
    for member in members.values():
        member.context.close()


def _camera_track(page: Page, participant: str) -> str:
    """The down offer's msid track id of `participant`'s camera, as this page received it."""
    return str(
        page.evaluate(
            """(participant) => {
              const sdp = window.__eboard.live.down.remoteDescription.sdp;
              const found = [...sdp.matchAll(/^a=msid:(\\S+) (\\S+-video-\\d+)/gm)];
              return found.filter((m) => m[1] === participant).map((m) => m[2]).pop();
            }""",
            participant,
        )
    )


def test_the_server_tells_each_participant_its_link_and_its_tiles(
    live_server: tuple[Server, LiveServer], pair: tuple[int, dict[str, Member]]
) -> None:
    _, members = pair
    chair, surgeon = members["chair"].page, members["surgeon"].page
    for page in (chair, surgeon):
        _wait_playing(page, count=1)
    chair_id = str(chair.evaluate("window.__eboard.live.you"))
    camera = _camera_track(surgeon, chair_id)
    # The real estimate from the browser's transport-cc feedback, and the chair's camera in
    # full: one other camera on a fresh link fits.
    quality = surgeon.wait_for_function(
        """(camera) => {
          const q = window.__eboard.live.quality;
          return q && q.estimate_kbps > 0 && q.tracks[camera] === 'full' && q;
        }""",
        arg=camera,
        timeout=20_000,
    ).json_value()
    assert 100 <= quality["estimate_kbps"] <= 20_000, quality
    expect(surgeon.get_by_test_id("room-link")).to_contain_text("Link ")
    tile = surgeon.locator(f'[data-testid="room-tile"][data-participant="{chair_id}"]')
    expect(tile).to_have_attribute("data-quality", "full")


def test_a_tile_shows_paused_and_reduced_video_and_the_line_shows_the_link(
    live_server: tuple[Server, LiveServer], pair: tuple[int, dict[str, Member]]
) -> None:
    _, media = live_server
    media.hold_real_quality = True  # what the page shows from here is what the test sends
    session_id, members = pair
    chair, surgeon = members["chair"].page, members["surgeon"].page
    for page in (chair, surgeon):
        _wait_playing(page, count=1)
    chair_id = str(chair.evaluate("window.__eboard.live.you"))
    surgeon_id = str(surgeon.evaluate("window.__eboard.live.you"))
    camera = _camera_track(surgeon, chair_id)
    tile = surgeon.locator(f'[data-testid="room-tile"][data-participant="{chair_id}"]')

    media.send(LinkQuality(str(session_id), surgeon_id, 380, ((camera, "paused"),)))
    expect(tile).to_have_attribute("data-quality", "paused")
    expect(tile.get_by_test_id("room-tile-paused")).to_have_text("Video paused to save bandwidth")
    expect(tile.get_by_test_id("room-tile-paused")).to_be_visible()
    link = surgeon.get_by_test_id("room-link")
    expect(link).to_have_text("Link 380 kbit/s (low)")
    expect(link).to_have_attribute("data-low", "true")
    assert surgeon.evaluate("window.__eboard.live.quality") == {
        "estimate_kbps": 380,
        "tracks": {camera: "paused"},
    }
    # Said in the other language too, not only by the dimming.
    surgeon.get_by_label("Language").select_option("zh-CN")
    tile = surgeon.locator(f'[data-testid="room-tile"][data-participant="{chair_id}"]')
    expect(tile.get_by_test_id("room-tile-paused")).to_have_text("为节省带宽，视频已暂停")
    expect(surgeon.get_by_test_id("room-link")).to_have_text("链路 380 kbit/s（偏低）")
    surgeon.get_by_label("语言").select_option("en")

    media.send(LinkQuality(str(session_id), surgeon_id, 1500, ((camera, "reduced"),)))
    tile = surgeon.locator(f'[data-testid="room-tile"][data-participant="{chair_id}"]')
    expect(tile).to_have_attribute("data-quality", "reduced")
    expect(tile.get_by_test_id("room-tile-reduced")).to_have_text("Reduced")
    expect(tile.get_by_test_id("room-tile-paused")).to_be_hidden()
    expect(surgeon.get_by_test_id("room-link")).to_have_text("Link 1.5 Mbit/s")
    expect(surgeon.get_by_test_id("room-link")).to_have_attribute("data-low", "false")

    # A track the page does not show (another generation of that camera) is not its tile's.
    other = camera.rsplit("-", 1)[0] + "-999"
    media.send(LinkQuality(str(session_id), surgeon_id, 1300, ((other, "paused"),)))
    expect(surgeon.get_by_test_id("room-link")).to_have_text("Link 1.3 Mbit/s")
    expect(tile).to_have_attribute("data-quality", "full")
    expect(tile.get_by_test_id("room-tile-reduced")).to_have_count(0)
    # The chair was told nothing of the surgeon's link, only of its own tracks.
    chair_quality = chair.evaluate("window.__eboard.live.quality") or {"tracks": {}}
    assert not {camera, other} & set(chair_quality["tracks"]), chair_quality
    expect(
        chair.locator(f'[data-testid="room-tile"][data-participant="{surgeon_id}"]')
    ).to_have_attribute("data-quality", "full")


# In the page: the camera's send parameters and what its encoder sends now.
CAMERA_SENT = """
async () => {
  const live = window.__eboard.live;
  const camera = live.up.getTransceivers()[1].sender;
  let height = 0;
  (await live.up.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video' && s.mid === '1' && s.frameHeight) {
      height = Math.max(height, s.frameHeight);
    }
  });
  return {
    offered: /^a=simulcast:send q;h;f/m.test(live.up.localDescription.sdp),
    answered: live.simulcastAnswered,
    encodings: camera.getParameters().encodings.map((e) => e.scaleResolutionDownBy),
    height,
  };
}
"""


def test_the_camera_publishes_three_layers_the_server_takes(
    pair: tuple[int, dict[str, Member]],
) -> None:
    _, members = pair
    page = members["chair"].page
    _wait_playing(page, count=1)
    sent = page.wait_for_function(
        f"async () => {{ const s = await ({CAMERA_SENT})(); return s.height > 0 && s; }}",
        timeout=20_000,
    ).json_value()
    # The server answers simulcast: all three encodings stay, and more than the 160×90 one
    # leaves (the server's transport-cc feedback lets the browser's estimate grow).
    assert sent["offered"] is True and sent["answered"] is True, sent
    assert sent["encodings"] == [4, 2, 1], sent
    assert sent["height"] > 90, sent


def test_a_shared_screen_keeps_its_resolution_beside_a_three_layer_camera(
    pair: tuple[int, dict[str, Member]],
) -> None:
    _, members = pair
    chair, surgeon = members["chair"].page, members["surgeon"].page
    for page in (chair, surgeon):
        _wait_playing(page, count=1)
    surgeon_id = str(surgeon.evaluate("window.__eboard.live.you"))
    chair.locator(f'[data-testid="room-presenter"][data-participant="{surgeon_id}"]').click()
    share = surgeon.get_by_test_id("room-share")
    expect(share).to_be_enabled()
    share.click()
    expect(share).to_have_attribute("data-active", "true")
    sent = surgeon.wait_for_function(
        """() => {
          const up = window.__eboard.live.up;
          const [, camera, screen] = up?.getTransceivers() ?? [];
          if (!screen || up.connectionState !== 'connected') return false;
          // The preference is set once the answer is applied, which may be after connecting.
          if (!screen.sender.getParameters().degradationPreference) return false;
          return {
            preference: screen.sender.getParameters().degradationPreference ?? null,
            camera: camera.sender.getParameters().encodings.length,
            offered: /^a=simulcast:/m.test(up.localDescription.sdp),
          };
        }""",
        timeout=20_000,
    ).json_value()
    # The republish offers simulcast again: the server routes the camera's layers by their
    # MID beside the screen, and the others keep seeing the camera.
    assert sent == {"preference": "maintain-resolution", "camera": 3, "offered": True}, sent
    _wait_playing(chair, count=1)
    share.click()
    expect(share).to_have_attribute("data-active", "false")
