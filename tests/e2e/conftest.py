"""End-to-end fixtures: the real server (``python -m server demo``) and headless Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    sync_playwright,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # WebGL in software (SwiftShader) for the DICOM viewer: the same renderer, and so the same
    # pixels, in every browser of a test, with or without a GPU on the machine.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path


def api_call(
    server: Server, method: str, path: str, token: str | None = None, body: Any = None
) -> Any:
    """One JSON request to the server's API, as a script would make it."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        f"{server.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def login_token(server: Server, username: str) -> str:
    """An access token for a demo user, got as a script gets one."""
    login = {"username": username, "password": "eboard-demo"}
    return str(api_call(server, "POST", "/api/login", body=login)["token"])


def log_in(page: Page, server: Server, username: str) -> None:
    """Open the app and log in on its login page, as a person does (submitted, not awaited:
    each test waits for what it needs to see next)."""
    page.goto(server.url + "/")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill("eboard-demo")
    page.get_by_test_id("login-submit").click()


def clock(instant: datetime, zone: ZoneInfo) -> str:
    """'7:30' style hour:minute as en-US shows it, without the day period."""
    local = instant.astimezone(zone)
    return f"{local.hour % 12 or 12}:{local.minute:02d}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert (ROOT / "client" / "dist" / "index.html").exists(), "build the client: make client"
    data_dir = tmp_path_factory.mktemp("e2e-data")
    port = _free_port()
    log = (data_dir / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "demo",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--demo-ct",
            "12x128",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {(data_dir / 'server.log').read_text()}")
        time.sleep(0.2)
    try:
        yield Server(url, data_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@dataclass
class CspWatch:
    """What Chromium's consoles said about the Content-Security-Policy: each a violation."""

    violations: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("console", self._heard)

    def _heard(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(message.text)


@pytest.fixture(scope="module")
def csp_watch() -> CspWatch:
    return CspWatch()


@pytest.fixture(scope="module")
def browser(playwright: Playwright, csp_watch: CspWatch) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    new_context = browser.new_context

    def watched_context(**kwargs: Any) -> BrowserContext:
        context = new_context(**kwargs)
        csp_watch.attach(context)
        return context

    # Every test's contexts report CSP violations (tests open them with browser.new_context).
    browser.new_context = watched_context  # type: ignore[method-assign]
    yield browser
    browser.close()


@pytest.fixture(autouse=True)
def no_csp_violations(csp_watch: CspWatch) -> Iterator[None]:
    """A test fails when a page it opened broke the server's Content-Security-Policy."""
    csp_watch.violations.clear()
    yield
    assert not csp_watch.violations, f"CSP violations: {csp_watch.violations}"
