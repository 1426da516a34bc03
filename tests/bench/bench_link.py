"""The link benchmark: a board across the emulated trans-Pacific link (tests/bench/link.py), the
SFU and N−1 local participants on one side, one remote participant — real headless Chromium —
on the other, through eBoard (its real room page, server with demo data) and through Janus's
VideoRoom (a small page of ours), each with the link on and off, side by side.

    python -m tests.bench.bench_link [--quick] [--sizes 4,8,12] [--targets eboard,janus] ...

Runs as root: it re-executes itself under ``unshare --net``, adds a second namespace for
Chromium and joins the two through the emulator's TUN devices, so every packet between the
sides crosses the link. Prints a table and writes ``tests/bench/results/link.json``; see
tests/bench/README.md ("Link benchmark") for each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from server.demo import DEMO_PASSWORD
from tests.e2e.conftest import CHROMIUM, CHROMIUM_FLAGS

from .clip import encode_clip
from .janus import JanusServer
from .link import BURST_LOSS, BURST_S, DELAY_S, LOSS, QUEUE_PACKETS, RATE_BPS
from .machine import (
    LOAD_ADDRESS,
    SERVER_ADDRESS,
    VETH,
    background_load,
    machine_cpu,
    set_up_namespace,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "bench" / "results"
TUN = ("ebl0", "ebl1")  # the local side's TUN device, the remote side's
LOCAL_TUN_ADDRESS, REMOTE_ADDRESS = "198.18.1.1", "198.18.1.2"
EBOARD_PORT, JANUS_PAGE_PORT = 8080, 8089
# The remote expert in Rochester (an external board member, admitted from the lobby); the
# locals: the chair (the presenter) first, then the home members, then extra members.
REMOTE_USER = "external"
LOCAL_USERS = ("chair", "radiologist", "pathologist", "surgeon", "oncologist", "coordinator")
EXTRA_USER = "link-member-{}"
# What Cornerstone3D's WADO-RS loader asks for (the viewer's own Accept).
# What the viewer asks for (client/src/viewer/setup.js): JPEG-LS lossless, else as stored.
FRAME_ACCEPT = (
    'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80, '
    'multipart/related; type="application/octet-stream"; transfer-syntax=*; q=0.5'
)
VISIBLE_FPS = 15.0  # a tile is back after the burst at this frame rate
FROZEN_S = 1.0  # a tile frozen longer than this counts
RECOVERY_MARGIN_S = 2.0  # after the burst, excluded from the steady-state figures


# The remote namespace and the link.


class Remote:
    """The remote namespace (held by a sleeping process), the link process between it and
    this one, and a wrapper that starts Chromium inside it."""

    def __init__(self, logs: Path) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "1000000"])
        self.netns = f"/proc/{self.holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(self.netns) == os.readlink("/proc/self/ns/net"):
            if time.monotonic() > deadline:
                raise RuntimeError("the remote namespace did not appear")
            time.sleep(0.01)
        self.link = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.link", "--local", TUN[0], "--remote", TUN[1]],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(logs / "link.log").open("wb"),
            text=True,
        )
        ready = self._read()
        if "ready" not in ready:
            raise RuntimeError(f"the link did not start: {ready}")
        self.priority = ready["ready"]["priority"]
        a, b = TUN
        inside = ["nsenter", f"--net={self.netns}"]
        for command in (
            f"ip addr add {LOCAL_TUN_ADDRESS} peer {REMOTE_ADDRESS} dev {a}",
            f"ip link set {a} up",
            f"ip link set {b} netns {self.holder.pid}",
        ):
            subprocess.run(command.split(), check=True)
        for command in (
            "ip link set lo up",
            f"ip addr add {REMOTE_ADDRESS} peer {LOCAL_TUN_ADDRESS} dev {b}",
            f"ip link set {b} up",
            f"ip route add default dev {b}",
        ):
            subprocess.run(inside + command.split(), check=True)
        for key in ("all", a):
            (Path("/proc/sys/net/ipv4/conf") / key / "rp_filter").write_text("0")
        self.chromium = logs / "chromium-remote"
        self.chromium.write_text(f'#!/bin/sh\nexec nsenter --net={self.netns} {CHROMIUM} "$@"\n')
        self.chromium.chmod(0o755)

    def _read(self) -> dict[str, Any]:
        assert self.link.stdout is not None
        line = self.link.stdout.readline()
        return json.loads(line) if line else {"error": "the link process exited"}

    def command(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.link.stdin is not None
        self.link.stdin.write(json.dumps(message) + "\n")
        self.link.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"link: {reply['error']}")
        return reply

    def set(self, on: bool) -> None:
        config = {
            "delay_s": DELAY_S,
            "loss": LOSS,
            "rate_bps": RATE_BPS,
            "queue_packets": QUEUE_PACKETS,
        }
        self.command({"cmd": "set", "off": not on, "config": config})

    def close(self) -> None:
        for process in (self.link, self.holder):
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


# Targets: what the remote opens, how the locals join.


class EboardTarget:
    """``python -m server demo`` on the local side's address (plain HTTP, as behind a TLS
    proxy), restarted per cell on the same data directory (seeded once)."""

    name = "eboard"

    def __init__(
        self, data_dir: Path, logs: Path, ct: str, locals_needed: int, warm: bool = False
    ) -> None:
        self.url = f"http://{SERVER_ADDRESS}:{EBOARD_PORT}"
        self._warm = warm
        self._data_dir = data_dir
        self._logs = logs
        self._ct = ct
        self._locals_needed = locals_needed
        self._process: subprocess.Popen[bytes] | None = None
        self._members_added = False
        self.series: dict[str, Any] | None = None
        self.session_id = 0
        self.agenda_item = 0  # the ready case's item on the session's agenda

    async def start(self) -> None:
        command = [sys.executable, "-m", "server", "demo", "--data-dir", str(self._data_dir)]
        command += ["--host", SERVER_ADDRESS, "--port", str(EBOARD_PORT), "--insecure-http"]
        command += ["--demo-ct", self._ct, "--demo-password", DEMO_PASSWORD]
        self._process = _spawn(command, self._logs / "eboard.log")
        deadline = time.monotonic() + 300
        async with aiohttp.ClientSession() as http:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"eboard exited: {self.tail()}")
                try:
                    async with http.get(f"{self.url}/api/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"eboard did not start: {self.tail()}")
                await asyncio.sleep(0.3)
        await self._roster()

    def tail(self, size: int = 1500) -> str:
        log = self._logs / "eboard.log"
        return log.read_text(errors="replace")[-size:] if log.exists() else ""

    async def _roster(self) -> None:
        """The ready case on the next session's agenda, enough board members, everyone's
        token, and the series the remote's viewer opens (its own, de-identified copy)."""
        async with aiohttp.ClientSession(base_url=self.url) as http:

            async def api(method: str, path: str, token: str | None, body: Any = None) -> Any:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.request(method, path, headers=headers, json=body) as resp:
                    if resp.status >= 300:
                        raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
                    return await resp.json()

            async def login(username: str) -> str:
                body = {"username": username, "password": DEMO_PASSWORD}
                return str((await api("POST", "/api/login", None, body))["token"])

            admin, coordinator = await login("admin"), await login("coordinator")
            board = (await api("GET", "/api/boards", coordinator))["items"][0]
            sessions = await api("GET", f"/api/boards/{board['id']}/sessions", coordinator)
            self.session_id = int(sessions["items"][0]["id"])
            cases = (await api("GET", "/api/cases", coordinator))["items"]
            case = next(c for c in cases if c["ready"])
            agenda_path = f"/api/sessions/{self.session_id}/agenda"
            agenda = await api("GET", agenda_path, coordinator)
            if all(item["case_id"] != case["id"] for item in agenda["items"]):
                entry = {"case_id": case["id"], "timebox_minutes": 15}
                await api("POST", agenda_path, coordinator, entry)
                agenda = await api("GET", agenda_path, coordinator)
            self.agenda_item = next(
                int(item["id"]) for item in agenda["items"] if item["case_id"] == case["id"]
            )
            extras = [
                EXTRA_USER.format(n)
                for n in range(1, max(0, self._locals_needed - len(LOCAL_USERS)) + 1)
            ]
            users = {u["username"] for u in (await api("GET", "/api/users", admin))["items"]}
            for username in extras:
                if username in users:
                    continue
                user = await api(
                    "POST",
                    "/api/users",
                    admin,
                    {
                        "username": username,
                        "password": DEMO_PASSWORD,
                        "display_name": f"Dr. {username}",
                        "role": "specialist",
                        "specialty": "radiology",
                        "institution_id": board["home_institution_id"],
                    },
                )
                member = {"user_id": user["id"], "role": "specialist"}
                await api("POST", f"/api/boards/{board['id']}/members", coordinator, member)
            self.tokens = [await login(name) for name in (*LOCAL_USERS, *extras)]
            remote = await login(REMOTE_USER)
            imaging = await api("GET", f"/api/cases/{case['id']}/imaging", remote)
            self.series = imaging["series"][0] if imaging["series"] else None

    def roster(self, path: Path, locals_count: int) -> Path:
        tokens = self.tokens[:locals_count]
        path.write_text(json.dumps({"session_id": self.session_id, "tokens": tokens}))
        return path

    def generator_args(self, roster: Path) -> list[str]:
        return ["--url", self.url, "--roster", str(roster)]

    async def open_remote(self, page: Page, presenter: str | None) -> str:
        """Log in on the login page, open the session, click Join; the remote's participant id."""
        await page.goto(self.url + "/")
        await page.get_by_test_id("login-username").fill(REMOTE_USER)
        await page.get_by_test_id("login-password").fill(DEMO_PASSWORD)
        await page.get_by_test_id("login-submit").click()
        await page.get_by_test_id("current-user").wait_for(timeout=30_000)
        if self._warm:
            # A returning user: the client's scripts, workers and codecs are in the browser's
            # cache already (a first visit downloads ~6 MB of them over the link, the viewer's
            # in the board's first seconds).
            assets = sorted(p.name for p in (ROOT / "client" / "dist" / "assets").iterdir())
            await page.evaluate(
                "urls => Promise.all(urls.map((u) => fetch(u).then((r) => r.arrayBuffer())))",
                [f"/assets/{name}" for name in assets],
            )
        await page.goto(f"{self.url}/#/sessions/{self.session_id}")
        join = page.get_by_test_id("join-room")
        await join.wait_for(timeout=30_000)
        await page.evaluate(FIRST_FRAME)
        await page.evaluate(SAMPLER, "eboard")
        await join.click()
        handle = await page.wait_for_function(
            "() => window.__eboard?.live?.phase === 'live' && window.__eboard.live.you",
            timeout=60_000,
        )
        return str(await handle.json_value())

    async def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            await asyncio.to_thread(self._process.wait, 20)


class JanusLinkTarget:
    """Janus 1.1.2 VideoRoom, started per cell; the remote's page and a proxy to Janus's HTTP
    API (on loopback) served on the local side's address."""

    name = "janus"
    series = None

    def __init__(self, event_loops: int, stage_substream: int) -> None:
        self._stage_substream = stage_substream
        # Gathering on the TUN device too: on the veth end alone, Chromium's checks across the
        # link never completed.
        self._server = JanusServer(f"{VETH[0]},{TUN[0]}", event_loops=event_loops)
        self.url = f"http://{SERVER_ADDRESS}:{JANUS_PAGE_PORT}"
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._server.start()
        await self._server.wait_ready()
        app = web.Application()
        http = aiohttp.ClientSession()
        janus = self._server.url

        async def page(_: web.Request) -> web.Response:
            html = (Path(__file__).parent / "link_janus.html").read_text()
            return web.Response(text=html, content_type="text/html")

        async def proxy(request: web.Request) -> web.Response:
            url = janus + request.match_info["rest"]
            body = await request.read()
            async with http.request(
                request.method, url, params=request.query, data=body or None
            ) as resp:
                return web.Response(
                    body=await resp.read(), status=resp.status, content_type="application/json"
                )

        async def close_http(_: web.Application) -> None:
            await http.close()

        app.router.add_get("/", page)
        app.router.add_route("*", "/janus{rest:.*}", proxy)
        app.on_cleanup.append(close_http)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, SERVER_ADDRESS, JANUS_PAGE_PORT).start()

    def generator_args(self, roster: Path) -> list[str]:
        return ["--janus", self._server.url]

    async def open_remote(self, page: Page, presenter: str | None) -> str:
        await page.goto(self.url + "/")
        await page.evaluate(FIRST_FRAME)
        await page.evaluate(SAMPLER, "janus")
        join = "([presenter, stage]) => window.linkJoin(presenter, stage)"
        return str(await page.evaluate(join, [presenter, self._stage_substream]))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._server.stop()


Target = EboardTarget | JanusLinkTarget


def _spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=out)


# In the remote's page.

# Started just before joining: seconds from then until a remote video has presented a frame,
# and when each step on the way first happened (`__joinTimeline`: admitted, each connection
# offered and connected, a remote video shown), to tell where the time goes.
FIRST_FRAME = """
() => {
  const start = performance.now();
  window.__linkJoinedAt = start / 1000;
  const timeline = {};
  window.__joinTimeline = timeline;
  const mark = (name, reached) => {
    if (reached && !(name in timeline)) timeline[name] = (performance.now() - start) / 1000;
  };
  const poll = () => {
    const live = window.__eboard?.live;
    const up = live?.up ?? window.__link?.up;
    const down = live?.down ?? window.__link?.down;
    mark('room_page', Boolean(live));
    mark('admitted', live?.phase === 'live' || Boolean(window.__link));
    const socket = live?.socket;
    if (socket && !socket.__timed) {
      socket.__timed = true; // each socket.io event's first time, sent and received
      socket.onAnyOutgoing((event) => mark(`sent_${event}`, true));
      socket.onAny((event) => mark(`got_${event}`, true));
    }
    mark('socket_connected', Boolean(socket?.connected));
    mark('local_media', Boolean(live?.local));
    mark('up_created', Boolean(up));
    mark('down_created', Boolean(down));
    mark('up_connected', up?.connectionState === 'connected');
    mark('down_connected', down?.connectionState === 'connected');
    const videos = [...document.querySelectorAll('[data-testid="room-video-remote"]')];
    mark('video_shown', videos.length > 0);
    if (videos.some((v) => v.getVideoPlaybackQuality().totalVideoFrames > 0)) {
      window.__firstFrame = (performance.now() - start) / 1000;
    } else {
      setTimeout(poll, 20);
    }
  };
  poll();
}
"""

# Every 0.5 s: the down connection's inbound RTP (per video track; audio summed) and the
# remote tiles (participant, track, whether the page shows the tile paused).
SAMPLER = """
(mode) => {
  window.__linkSamples = [];
  const down = () => (mode === 'janus' ? window.__link?.down : window.__eboard?.live?.down);
  const tick = async () => {
    const t = performance.now() / 1000;
    const tiles = [...document.querySelectorAll('[data-testid="room-video-remote"]')].map((v) => ({
      participant: v.dataset.participant ?? null,
      track: v.srcObject?.getVideoTracks?.()[0]?.id ?? null,
      paused: (v.closest('[data-quality]')?.dataset.quality ?? v.dataset.quality) === 'paused',
    }));
    const video = {};
    let concealed = 0;
    let total = 0;
    const pc = down();
    if (pc) {
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') {
          video[s.trackIdentifier] = {
            frames: s.framesDecoded ?? 0, fps: s.framesPerSecond ?? 0,
            freezes: s.freezeCount ?? 0, freeze_s: s.totalFreezesDuration ?? 0,
            w: s.frameWidth ?? 0, h: s.frameHeight ?? 0,
            jbd: s.jitterBufferDelay ?? 0, jbe: s.jitterBufferEmittedCount ?? 0,
            lost: s.packetsLost ?? 0, received: s.packetsReceived ?? 0,
          };
        } else if (s.kind === 'audio') {
          concealed += s.concealedSamples ?? 0;
          total += s.totalSamplesReceived ?? 0;
        }
      });
    }
    const live = window.__eboard?.live;
    const estimate = live?.quality?.estimate_kbps ?? null;
    const speaking = live ? live.snapshot?.speaker === live.you : null; // the remote talks now
    window.__linkSamples.push({ t, tiles, video, concealed, total, estimate, speaking });
    if (window.__linkSamples.length < 4000) setTimeout(tick, 500);
  };
  tick();
}
"""

# The series as the room's viewer fetches it over a thin link: metadata, then the presented
# (middle) image alone, as the viewer loads the image it shows (unpaced), then the others as
# the room's prefetch does (client/src/viewer/prefetch.js): two requests in flight, their
# average held to ``rate`` bit/s, each reply paced at its share of it by the server
# (X-Eboard-Pace).
IMAGES = """
async ({ base, accept, parallel, rate, timeout }) => {
  const control = new AbortController();
  const timer = setTimeout(() => control.abort(), timeout * 1000);
  const start = performance.now();
  const since = () => (performance.now() - start) / 1000;
  const out = { start: start / 1000, metadata_s: null, presented_s: null, series_s: null,
                frames: 0, images: 0, bytes: 0, error: null, rate };
  const frame = async (sop, headers) => {
    const response = await fetch(`${base}/instances/${sop}/frames/1`, {
      headers: { Accept: accept, ...headers }, credentials: 'same-origin', signal: control.signal,
    });
    if (!response.ok) throw new Error(`frame: HTTP ${response.status}`);
    const size = (await response.arrayBuffer()).byteLength;
    out.bytes += size;
    out.frames += 1;
    return size;
  };
  try {
    const meta = await fetch(`${base}/metadata`, {
      headers: { Accept: 'application/dicom+json' }, credentials: 'same-origin',
      signal: control.signal,
    });
    if (!meta.ok) throw new Error(`metadata: HTTP ${meta.status}`);
    const text = await meta.text();
    out.bytes += text.length;
    const instances = JSON.parse(text);
    out.metadata_s = since();
    const number = (i) => i['00200013']?.Value?.[0] ?? 0;
    const sops = instances.sort((a, b) => number(a) - number(b)).map((i) => i['00080018'].Value[0]);
    out.images = sops.length;
    const presented = sops[Math.floor(sops.length / 2)];
    await frame(presented, {});
    out.presented_s = since();
    const queue = sops.filter((s) => s !== presented);
    const began = performance.now();
    let sent = 0;
    const worker = async () => {
      while (queue.length) {
        const wait = began + (sent * 8 / rate) * 1000 - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const sop = queue.shift();
        if (!sop) break;
        // (The server takes no pace under 64 kbit/s; the room's prefetch clamps so too.)
        const pace = Math.max(64000, Math.round(rate / parallel));
        sent += await frame(sop, { 'X-Eboard-Pace': String(pace) });
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    out.series_s = since();
  } catch (error) {
    out.error = String(error);
  } finally {
    clearTimeout(timer);
    out.end = performance.now() / 1000;
  }
  return out;
}
"""


# Chromium's fake camera runs at 20 fps unless told otherwise (its getSettings() says so): the
# remote's camera runs at a webcam's 30, or the locals could never see it at the 20 fps asked.
REMOTE_FLAGS = [
    "--use-fake-device-for-media-stream=fps=30"
    if flag == "--use-fake-device-for-media-stream"
    else flag
    for flag in CHROMIUM_FLAGS
]

# When the remote's room viewer first had the shared view `seq` (or a later one) on screen, in
# ms since the epoch (its ViewSync timeline; the runner's and the generator's clock too).
SHOWN = "(seq) => window.__eboard?.room?.sync?.timeline.find((e) => e.seq >= seq)?.at ?? false"

# Where the presented image's time went: the first frame request the remote started after the
# view was sent (ms from sending it), from the browser's resource timing.
PRESENTED_FETCH = """(sentAt) => {
  const since = (t) => (t ? Math.round(performance.timeOrigin + t - sentAt) : null);
  const entry = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/frames/') && performance.timeOrigin + e.startTime >= sentAt)
    .sort((a, b) => a.startTime - b.startTime)[0];
  if (!entry) return null;
  return {
    start_ms: since(entry.startTime), connect_ms: since(entry.connectEnd),
    request_ms: since(entry.requestStart), first_byte_ms: since(entry.responseStart),
    end_ms: since(entry.responseEnd), bytes: entry.encodedBodySize,
    new_connection: entry.connectStart !== entry.connectEnd,
  };
}"""

# The presenter's steps after opening the series: slices one after another, as a radiologist
# scrolls through a finding, then window/level, zoom and pan (no new image: the sync alone).
SCROLLS, ADJUSTS = 10, 100  # a hundred, so that p99 is not simply the largest
STEP_PAUSE_S = 0.25


def _viewport(alias: str, index: int, *, voi: Any = None, zoom: float = 1.0) -> dict[str, Any]:
    return {
        "series": alias,
        "index": index,
        "voi": voi,
        "invert": False,
        "presentation": {
            "zoom": zoom,
            "pan": [0.0, 0.0],
            "rotation": 0,
            "flipHorizontal": False,
            "flipVertical": False,
        },
    }


async def follow_views(
    page: Page, generator: Generator, series: dict[str, Any], agenda_item: int
) -> dict[str, Any]:
    """The chair makes the case current; the presenter (a local, over socket.io) opens its
    series at a quarter of its depth, a slice the remote's prefetch (from the middle outward)
    has not reached yet: the presented image, from sending the view to the remote's viewer
    showing it. Then it scrolls and adjusts; each step waits for the remote to show it before
    the next."""
    alias, count = str(series["alias"]), int(series["instances"])
    start = max(0, count // 4)
    # The chair brings the case up; the remote's viewer opens before anything is presented.
    generator.send({"cmd": "chair", "name": "agenda", "data": {"item_id": agenda_item}})
    reply = await generator.expect("chair_reply", 30)
    if not isinstance(reply, dict) or reply.get("ok") is not True:
        raise RuntimeError(f"the chair could not open the case: {reply}")
    await page.wait_for_function("() => window.__eboard?.room?.viewer", timeout=30_000)

    sent_views: list[tuple[int, float]] = []  # (seq, at) of every step, in order

    async def step(patch: dict[str, Any], wait_s: float) -> float | None:
        generator.send({"cmd": "view", "patch": patch})
        sent = await generator.expect("view_sent", 30)
        sent_views.append((int(sent["seq"]), float(sent["at"])))
        if "error" in sent or sent.get("dropped"):
            raise RuntimeError(f"the presenter's view was refused: {sent}")
        try:
            handle = await page.wait_for_function(
                SHOWN, arg=sent["seq"], polling=10, timeout=wait_s * 1000
            )
        except Exception:
            return None  # not shown in time: counted as missing
        return float(await handle.json_value()) - float(sent["at"])

    presented = await step({"viewports": {"0": _viewport(alias, start)}}, 30)
    presented_fetch = await page.evaluate(PRESENTED_FETCH, sent_views[0][1])
    scrolls: list[float | None] = []
    for n in range(1, SCROLLS + 1):
        await asyncio.sleep(STEP_PAUSE_S)
        scrolls.append(await step({"viewports": {"0": _viewport(alias, start + n)}}, 30))
    adjusts: list[float | None] = []
    index = start + SCROLLS
    for n in range(ADJUSTS):
        await asyncio.sleep(STEP_PAUSE_S)
        voi = {"center": 40 + 10 * (n % 5), "width": 400 - 20 * (n % 3)}
        view = _viewport(alias, index, voi=voi, zoom=1.0 + 0.1 * (n % 4))
        adjusts.append(await step({"viewports": {"0": view}}, 10))

    def ms(values: list[float | None]) -> dict[str, Any]:
        seen = sorted(v for v in values if v is not None)
        return {
            "p50_ms": round(_percentile(seen, 0.5), 1) if seen else None,
            "p99_ms": round(_percentile(seen, 0.99), 1) if seen else None,
            "max_ms": round(seen[-1], 1) if seen else None,
            "missing": len(values) - len(seen),
            "each_ms": [None if v is None else round(v, 1) for v in values],
        }

    # Which path each update came on, and which brought it first: the socket (TCP, in
    # order) or the down connection's data channel (unordered, never retransmitted).
    paths = await page.evaluate(
        "() => ({arrived: window.__eboard.room.sync.arrived, first: window.__eboard.room.sync.via})"
    )
    # The network's share: when the first copy of each adjustment arrived (either path).
    arrivals = await page.evaluate("() => window.__eboard.room.sync.arrivals")
    first: dict[int, float] = {}
    for arrival in arrivals:
        first.setdefault(int(arrival["seq"]), float(arrival["at"]))
    arrived = [first[seq] - at if seq in first else None for seq, at in sent_views[-len(adjusts) :]]
    return {
        "presented_index": start,
        "presented_image_s": None if presented is None else round(presented / 1000, 2),
        "presented_fetch": presented_fetch,
        "scroll": ms(scrolls),
        "sync": ms(adjusts),
        "sync_arrived": ms(arrived),
        "paths": paths,
    }


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile of sorted ``values``."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


# Figures from the samples.


REMOTE_TALK_S, REMOTE_CYCLE_S = 4.0, 32.0


def write_remote_voice(path: Path) -> Path:
    """The remote's microphone for Chromium (``--use-file-for-fake-audio-capture``, looped):
    speech-like sound for ``REMOTE_TALK_S`` seconds in every ``REMOTE_CYCLE_S``, silence
    between, so the remote takes its turn to talk like the locals (Chromium's own fake
    microphone beeps too briefly to count as speech). Syllables of 200 ms with 40 ms gaps, each
    at its own pitch with two harmonics: a steady tone would be taken away by the browser's
    noise suppression as noise."""
    rate = 48_000
    frames = bytearray()
    pitches = (140.0, 190.0, 165.0, 230.0, 175.0, 150.0, 210.0)
    for n in range(int(REMOTE_CYCLE_S * rate)):
        t = n / rate
        sample = 0
        syllable, within = divmod(t, 0.24)
        if t < REMOTE_TALK_S and within < 0.2:
            f0 = pitches[int(syllable) % len(pitches)] * (1 + 0.15 * within)  # a rising pitch
            envelope = math.sin(math.pi * within / 0.2) ** 0.3
            wave_ = sum(math.sin(2 * math.pi * f0 * k * t) / k for k in (1, 2, 3))
            sample = int(6000 * envelope * wave_)
        frames += struct.pack("<h", sample)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def prefetch_rate(samples: list[dict[str, Any]]) -> int:
    """The rate the room's prefetch takes (client/src/room/page.js): 30 % of the link's
    estimate (kbit/s, from the remote's last sample), at least 100 kbit/s; 600 kbit/s when there
    is no estimate."""
    estimates = [s["estimate"] for s in samples if s.get("estimate")]
    if not estimates:
        return 600_000
    return max(100_000, int(estimates[-1] * 1000 * 0.3))


def _visible(samples: list[dict[str, Any]]) -> dict[str, str | None]:
    """Track → participant of the tiles shown unpaused in any of ``samples``."""
    return {
        t["track"]: t["participant"]
        for sample in samples
        for t in sample["tiles"]
        if t["track"] and not t["paused"]
    }


def _pairs(
    samples: list[dict[str, Any]], start: float, end: float, skip: tuple[float, float] | None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Consecutive sample pairs within [start, end], leaving out those overlapping ``skip``."""
    inside = [s for s in samples if start <= s["t"] <= end]
    pairs = list(zip(inside, inside[1:], strict=False))
    if skip is not None:
        pairs = [(a, b) for a, b in pairs if b["t"] <= skip[0] or a["t"] >= skip[1]]
    return pairs


def _frames(sample: dict[str, Any], track: str) -> int:
    return int(sample["video"].get(track, {}).get("frames", 0))


def _shown(sample: dict[str, Any], track: str) -> bool:
    """Whether the page shows ``track``'s tile unpaused in ``sample``."""
    return any(t["track"] == track and not t["paused"] for t in sample["tiles"])


def track_fps(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]], track: str
) -> tuple[float | None, float]:
    """(mean fps over the pairs in which the tile was shown unpaused, None if it never was;
    the longest run without a new frame while shown unpaused, in seconds). A tile the page
    marks paused is not frozen: the issue's goal leaves out what the allocator paused and
    shows as paused."""
    frames = seconds = 0.0
    still = longest = 0.0
    for a, b in pairs:
        if not (_shown(a, track) and _shown(b, track)):
            still = 0.0
            continue
        new = _frames(b, track) - _frames(a, track)
        frames += max(0, new)
        seconds += b["t"] - a["t"]
        still = still + (b["t"] - a["t"]) if new <= 0 else 0.0
        longest = max(longest, still)
    return (frames / seconds if seconds else None), longest


def remote_figures(
    samples: list[dict[str, Any]],
    window: tuple[float, float],
    burst: tuple[float, float] | None,
    presenter: str | None,
) -> dict[str, Any]:
    """The remote's figures over the measurement window (page clock, seconds). Steady-state
    figures leave out the burst and the ``RECOVERY_MARGIN_S`` after it."""
    start, end = window
    skip = (burst[0], burst[1] + RECOVERY_MARGIN_S) if burst else None
    pairs = _pairs(samples, start, end, skip)
    visible = _visible([s for s in samples if start <= s["t"] <= end])
    fps: dict[str, float] = {}
    frozen = 0
    for track in visible:
        rate, still = track_fps(pairs, track)
        if rate is not None:
            fps[track] = rate
        frozen += still > FROZEN_S
    stage = next((t for t, p in visible.items() if presenter and p == presenter), None)
    inside = [s for s in samples if start <= s["t"] <= end]
    concealed = total = 0
    for a, b in pairs:
        concealed += b["concealed"] - a["concealed"]
        total += b["total"] - a["total"]
    last = inside[-1]["video"] if inside else {}
    recovery = None
    if burst is not None:
        after = [s for s in samples if s["t"] >= burst[1]]
        for a, b in zip(after, after[1:], strict=False):
            dt = b["t"] - a["t"]
            shown = [t for t in visible if _shown(a, t) and _shown(b, t)]
            if (
                dt > 0
                and shown
                and all((_frames(b, t) - _frames(a, t)) / dt >= VISIBLE_FPS for t in shown)
            ):
                recovery = round(b["t"] - burst[1], 2)
                break
    return {
        "stage_fps": round(fps[stage], 1) if stage in fps else None,
        "stage_size": f"{last[stage]['w']}x{last[stage]['h']}" if stage in last else None,
        "min_visible_fps": round(min(fps.values()), 1) if fps else None,
        "mean_visible_fps": round(sum(fps.values()) / len(fps), 1) if fps else None,
        "concealed_audio_pct": round(100 * concealed / total, 2) if total else None,
        "frozen_unpaused": frozen,
        "recovery_s": recovery,
        "visible_tiles": len(visible),
        "tiles": len(inside[-1]["tiles"]) if inside else 0,
        "freezes": sum(v.get("freezes", 0) for v in last.values()),
        "freeze_s": round(sum(v.get("freeze_s", 0) for v in last.values()), 2),
        "jitter_buffer_ms": _jitter_buffer_ms(last),
        "video_packets_lost": sum(v.get("lost", 0) for v in last.values()),
    }


def _jitter_buffer_ms(video: dict[str, Any]) -> float | None:
    delay = sum(v.get("jbd", 0) for v in video.values())
    emitted = sum(v.get("jbe", 0) for v in video.values())
    return round(1000 * delay / emitted, 1) if emitted else None


def loading_fps(samples: list[dict[str, Any]], span: tuple[float, float]) -> float | None:
    """The lowest visible tile's fps while the series loaded."""
    pairs = _pairs(samples, span[0], span[1], None)
    visible = _visible([s for s in samples if span[0] <= s["t"] <= span[1]])
    rates = [rate for t in visible if (rate := track_fps(pairs, t)[0]) is not None]
    return round(min(rates), 1) if pairs and rates else None


# One cell.


@dataclass
class Options:
    window: float
    warmup: float
    images: bool
    images_timeout: float
    clip: Path
    logs: Path
    progress: TextIO
    talk: str


class Generator:
    """A ``link_load`` process; JSON lines both ways."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, args: list[str], log: Path) -> Generator:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bench.link_load",
            *args,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("wb"),
            limit=8 * 1024 * 1024,
        )
        return cls(process, log)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    async def expect(self, key: str, seconds: float) -> Any:
        assert self.process.stdout is not None
        async with asyncio.timeout(seconds):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the load generator exited: {self.tail()}")
                message = json.loads(line)
                if key in message:
                    return message[key]
                if "failed" in message:
                    raise RuntimeError(f"{message['failed']}: {self.tail()}")

    def tail(self, size: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else ""

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.send({"cmd": "stop"})
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def run_cell(
    target: Target, size: int, on: bool, remote: Remote, browser: Browser, options: Options
) -> dict[str, Any]:
    cell: dict[str, Any] = {"target": target.name, "participants": size, "link": on}
    print(
        f"  {target.name} × {size}, link {'on' if on else 'off'} …",
        end="",
        flush=True,
        file=options.progress,
    )
    started = time.monotonic()
    remote.set(on)
    counters = remote.command({"cmd": "stats"})["stats"]
    generator: Generator | None = None
    context = None
    try:
        await target.start()
        roster = (
            target.roster(options.logs / "roster.json", size - 1)
            if isinstance(target, EboardTarget)
            else options.logs / "roster.json"
        )
        args = ["--participants", str(size - 1), "--clip", str(options.clip)]
        args += ["--talk", options.talk]
        args += ["--address", LOAD_ADDRESS, *target.generator_args(roster)]
        log = options.logs / f"{target.name}-{size}-{'on' if on else 'off'}.log"
        generator = await Generator.start(args, log)
        ready = await generator.expect("ready", 120)
        presenter = ready["presenter"]
        context = await browser.new_context(locale="en-US", timezone_id="America/New_York")
        await context.add_init_script("localStorage.setItem('eboard.debug', '1')")
        # Every frame request's timing is kept (the browser keeps 250 by default).
        await context.add_init_script("performance.setResourceTimingBufferSize(5000)")
        page = await context.new_page()
        you = await target.open_remote(page, presenter)
        generator.send({"cmd": "remote", "id": you})
        added = await generator.expect("remote_added", 60)
        try:
            handle = await page.wait_for_function("() => window.__firstFrame", timeout=30_000)
            first_frame: float | None = round(float(await handle.json_value()), 2)
        except Exception:
            first_frame = None
        timeline = await page.evaluate("window.__joinTimeline ?? {}")
        await asyncio.sleep(options.warmup)
        now = "() => performance.now() / 1000"
        generator.send({"cmd": "window_start"})
        await generator.expect("window_started", 10)
        t0 = float(await page.evaluate(now))
        busy0 = machine_cpu()
        burst = None
        if on:
            await asyncio.sleep(max(0.0, options.window / 2 - BURST_S / 2))
            remote.command({"cmd": "burst", "seconds": BURST_S, "loss": BURST_LOSS})
            b0 = float(await page.evaluate(now))
            burst = (b0, b0 + BURST_S)
            await asyncio.sleep(options.window - (b0 - t0))
        else:
            await asyncio.sleep(options.window)
        generator.send({"cmd": "window_end"})
        window = await generator.expect("window", 20)
        busy1 = machine_cpu()
        t1 = float(await page.evaluate(now))
        views = None
        if options.images and isinstance(target, EboardTarget) and target.series is not None:
            views = await follow_views(page, generator, target.series, target.agenda_item)
            views["prefetch"] = await page.evaluate("window.__eboard.room.prefetch?.progress")
        images = None
        if options.images and target.series is not None:
            series = target.series
            base = (
                f"/dicom-web/studies/{series['study_instance_uid']}"
                f"/series/{series['series_instance_uid']}"
            )
            samples_now = await page.evaluate("window.__linkSamples")
            loaded = await page.evaluate(
                IMAGES,
                {
                    "base": base,
                    "accept": FRAME_ACCEPT,
                    "parallel": 2,
                    "rate": prefetch_rate(samples_now),
                    "timeout": options.images_timeout,
                },
            )
            samples = await page.evaluate("window.__linkSamples")
            images = {
                # In the room: from the presenter's view to the remote's screen (follow_views).
                "presented_image_s": views["presented_image_s"] if views else None,
                # Fetched by hand, cold: the series' metadata, then the middle image.
                "cold_image_s": _round(loaded["presented_s"]),
                "series_s": _round(loaded["series_s"]),
                "video_fps_while_loading": loading_fps(samples, (loaded["start"], loaded["end"])),
                "metadata_s": _round(loaded["metadata_s"]),
                "images": loaded["images"],
                "rate": loaded["rate"],
                "images_loaded": loaded["frames"],
                "megabytes": round(loaded["bytes"] / 1e6, 1),
                "error": loaded["error"],
            }
        samples = await page.evaluate("window.__linkSamples")
        # Every sample of the remote's page, for a look behind the figures.
        (options.logs / f"{target.name}-{size}-{'on' if on else 'off'}-samples.json").write_text(
            json.dumps(samples)
        )
        figures = remote_figures(samples, (t0, t1), burst, presenter)
        figures["first_frame_s"] = first_frame
        figures["join_timeline_s"] = {k: round(v, 2) for k, v in timeline.items()}
        see = window["locals_see_remote_fps"]
        cell.update(
            {
                "remote": figures,
                "locals_see_remote_fps": round(sum(see.values()) / len(see), 1) if see else None,
                "locals_see_remote_fps_each": see,
                "images": images,
                "views": views,
                "locals": {
                    k: window[k]
                    for k in ("fps_mean", "fps_min", "frozen_streams", "packets_lost")
                    if k in window
                },
                "remote_added": added,
                # % of both cores busy during the window (this machine may be shared)
                "machine_busy_pct": round(
                    100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1
                ),
                "link_counters": _delta(remote.command({"cmd": "stats"})["stats"], counters),
            }
        )
    except Exception as exc:  # a failed cell is reported, the run goes on
        cell["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        if generator is not None:
            cell["log_tail"] = generator.tail()
    finally:
        if context is not None:
            await context.close()
        if generator is not None:
            await generator.stop()
        await target.stop()
    print(f" {time.monotonic() - started:.0f} s", file=options.progress)
    return cell


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The link's counters for this cell (the relay runs for the whole run)."""
    return {
        k: _delta(v, before.get(k, {})) if isinstance(v, dict) else v - before.get(k, 0)
        for k, v in after.items()
    }


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


# The run.


async def run(args: argparse.Namespace, logs: Path, progress: TextIO) -> dict[str, Any]:
    background = await background_load()
    print(f"encoding the clip once (logs in {logs}) …", file=progress)
    clip_path = logs / "clip.pickle"
    # The locals publish their camera as a browser does: three simulcast layers (q/h/f).
    encode_clip(simulcast=not args.one_layer).save(clip_path)
    voice = write_remote_voice(logs / "remote-voice.wav")
    remote = Remote(logs)
    options = Options(
        args.window,
        args.warmup,
        args.images,
        args.images_timeout,
        clip_path,
        logs,
        progress,
        args.talk,
    )
    cells: list[dict[str, Any]] = []
    data_dir = logs / "eboard-data"
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(remote.chromium),
                args=[
                    *REMOTE_FLAGS,
                    "--autoplay-policy=no-user-gesture-required",
                    f"--use-file-for-fake-audio-capture={voice}",
                    "--unsafely-treat-insecure-origin-as-secure="
                    f"http://{SERVER_ADDRESS}:{EBOARD_PORT},"
                    f"http://{SERVER_ADDRESS}:{JANUS_PAGE_PORT}",
                ],
            )
            try:
                for size in args.sizes:
                    print(f"{size} participants", file=progress)
                    for name in args.targets:
                        for on in args.links:
                            target: Target
                            if name == "janus":
                                missing = JanusServer.available()
                                if missing:
                                    cells.append(
                                        {
                                            "target": name,
                                            "participants": size,
                                            "link": on,
                                            "error": missing,
                                        }
                                    )
                                    continue
                                target = JanusLinkTarget(
                                    args.janus_event_loops, args.janus_stage_substream
                                )
                            else:
                                target = EboardTarget(
                                    data_dir, logs, args.ct, max(args.sizes) - 1, args.warm_cache
                                )
                            cells.append(await run_cell(target, size, on, remote, browser, options))
            finally:
                await browser.close()
    finally:
        remote.close()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "others_cpu_pct_at_start": background,
            "link_priority": remote.priority,
        },
        "config": {
            "link": {
                "delay_ms_one_way": DELAY_S * 1000,
                "loss_pct_each_way": LOSS * 100,
                "rate_mbit_each_way": RATE_BPS / 1e6,
                "queue_packets": QUEUE_PACKETS,
                "burst": f"{BURST_LOSS * 100:.0f} % loss for {BURST_S:.0f} s, mid-window",
                "off": "the same TUN relay with no loss, no rate limit and no delay",
            },
            "sizes": args.sizes,
            "targets": args.targets,
            "window_s": args.window,
            "warmup_s": args.warmup,
            "ct": args.ct,
            "frame_accept": FRAME_ACCEPT,
            "janus_event_loops": args.janus_event_loops,
            "janus_stage_substream": args.janus_stage_substream,
            "talk": args.talk,
        },
        "cells": cells,
    }


def table(cells: list[dict[str, Any]]) -> str:
    columns = [
        ("stage fps", lambda c: c["remote"]["stage_fps"]),
        ("min vis fps", lambda c: c["remote"]["min_visible_fps"]),
        ("conceal %", lambda c: c["remote"]["concealed_audio_pct"]),
        ("frozen", lambda c: c["remote"]["frozen_unpaused"]),
        ("recovery s", lambda c: c["remote"]["recovery_s"]),
        ("1st frame s", lambda c: c["remote"]["first_frame_s"]),
        ("locals fps", lambda c: c["locals_see_remote_fps"]),
        ("image s", lambda c: (c["images"] or {}).get("presented_image_s")),
        ("sync p99 ms", lambda c: ((c.get("views") or {}).get("sync") or {}).get("p99_ms")),
        ("scroll p99", lambda c: ((c.get("views") or {}).get("scroll") or {}).get("p99_ms")),
        ("series s", lambda c: (c["images"] or {}).get("series_s")),
        ("fps loading", lambda c: (c["images"] or {}).get("video_fps_while_loading")),
    ]
    head = f"{'N':>3} {'target':<7} {'link':<4} " + " ".join(f"{h:>11}" for h, _ in columns)
    lines = [head, "-" * len(head)]
    for c in cells:
        prefix = f"{c['participants']:>3} {c['target']:<7} {'on' if c['link'] else 'off':<4}"
        if "error" in c:
            lines.append(f"{prefix} failed: {c['error'][:110]}")
            continue
        values = []
        for _, get in columns:
            value = get(c)
            values.append(f"{'–' if value is None else value:>11}")
        lines.append(f"{prefix} " + " ".join(values))
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",") if v]

    def links(text: str) -> list[bool]:
        values = {"on": True, "off": False}
        try:
            return [values[v] for v in text.split(",") if v]
        except KeyError as exc:
            raise argparse.ArgumentTypeError(f"--links takes on,off, not {text!r}") from exc

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 4, short windows, small CT")
    parser.add_argument("--sizes", type=ints, default=[4, 8, 12])
    parser.add_argument("--targets", type=lambda t: t.split(","), default=["eboard", "janus"])
    parser.add_argument("--links", type=links, default=[True, False])
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--no-images", dest="images", action="store_false")
    parser.add_argument(
        "--warm-cache",
        action="store_true",
        help="the remote's browser has the client's assets cached (a returning user)",
    )
    parser.add_argument(
        "--one-layer", action="store_true", help="locals publish one layer, not simulcast"
    )
    parser.add_argument("--images-timeout", type=float, default=120.0)
    parser.add_argument("--ct", default="120x512", help="the demo CT, SLICESxPIXELS")
    parser.add_argument("--janus-event-loops", type=int, default=2)
    parser.add_argument(
        "--janus-stage-substream",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="the layer Janus's remote receives the presenter at, 0 = 160x90 to 2 = 640x360 "
        "(the others: 0)",
    )
    parser.add_argument(
        "--talk",
        choices=("turns", "all"),
        default="turns",
        help="the locals' audio: one talks at a time, the rest silent with Opus DTX (turns), "
        "or all talk at once (all)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "link.json")
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in args.targets:
        if name not in ("eboard", "janus"):
            parser.error(f"--targets: unknown target {name!r} (eboard, janus)")
    for size in args.sizes:
        if not 3 <= size <= 16:
            parser.error(f"--sizes: {size} is not 3…16")
    if args.quick:
        if "--sizes" not in " ".join(argv):
            args.sizes = [4]
        args.window, args.warmup, args.ct, args.images_timeout = 12.0, 3.0, "24x256", 60.0
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    if not args.in_namespace:
        if os.geteuid() != 0:
            sys.exit("bench_link needs root: it makes network namespaces and TUN devices")
        os.execvp(
            "unshare",
            [
                "unshare",
                "--net",
                "--",
                sys.executable,
                "-m",
                "tests.bench.bench_link",
                "--in-namespace",
                *argv,
            ],
        )
    os.chdir(ROOT)
    set_up_namespace()
    logs = Path(tempfile.mkdtemp(prefix="bench-link-"))
    progress = os.fdopen(os.dup(2), "w", buffering=1)
    with (logs / "stderr.log").open("wb") as log:
        os.dup2(log.fileno(), 2)
    report = asyncio.run(run(args, logs, progress))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    link = report["config"]["link"]
    print(
        f"Link benchmark — {link['delay_ms_one_way']:.0f} ms one way, "
        f"{link['loss_pct_each_way']:.0f} % loss, {link['rate_mbit_each_way']:.0f} Mbit/s each "
        f"way; {link['burst']}; {args.window:.0f} s per cell; the remote is Chromium"
    )
    print(table(report["cells"]))
    print(f"\nwritten {args.output} (logs in {logs})")


if __name__ == "__main__":
    main(sys.argv[1:])
