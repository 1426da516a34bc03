"""LiveServer: a real `python -m server serve` on a loopback port over a seeded data dir, with
a token per demo user and its log to read for unhandled exceptions."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from ..bench.orthanc import free_port

__all__ = ["ROLES", "LiveServer", "seed_data_dir"]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "eboard-demo"
# One demo user per role (the radiologist is a specialist; external is another institution's).
ROLES = ("admin", "coordinator", "chair", "radiologist", "observer", "records", "external")
# A logged record at ERROR or above, or a traceback: what the fuzzers must never cause.
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \S+ (\w+) ")
_ERROR_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \S+ (ERROR|CRITICAL) ")


def seed_data_dir(path: Path) -> dict[str, int]:
    """Seed the demo into ``path`` (a small CT keeps it quick); the demo's ids."""
    from ..conftest import _seed_template

    return asyncio.run(_seed_template(path))


@dataclass
class LiveServer:
    """The server process, its URL and the demo users' tokens."""

    url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def start(cls, template: Path, work: Path) -> Iterator[LiveServer]:
        """Copy the seeded ``template`` into ``work`` and serve it until the block ends."""
        data_dir = work / "data"
        shutil.copytree(template, data_dir)
        port = free_port()
        log_path = work / "server.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--data-dir", str(data_dir)]
                + ["--port", str(port), "--media", "in-process", "--export-workers", "1"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        live = cls(f"http://127.0.0.1:{port}", data_dir, log_path, process)
        try:
            live._wait_healthy()
            live._log_in()
            yield live
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited while starting:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not become healthy:\n{self.log()}")

    def _log_in(self) -> None:
        for username in ROLES:
            resp = requests.post(
                f"{self.url}/api/login",
                json={"username": username, "password": PASSWORD},
                timeout=30,
            )
            resp.raise_for_status()
            self.tokens[username] = resp.json()["token"]

    def headers(self, username: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"} if username else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def error_lines(self) -> list[str]:
        """Every ERROR/CRITICAL record the server logged, with its traceback; and any traceback
        printed without one (engineio prints a copy of its own before logging the record)."""
        lines = self.log().splitlines()
        out = []
        level = "INFO"  # of the record the line belongs to
        for i, line in enumerate(lines):
            record = _RECORD.match(line)
            if record:
                level = record.group(1)
                if level in ("ERROR", "CRITICAL"):
                    out.append("\n".join(lines[i : i + 40]))
            elif line.startswith("Traceback ") and level not in ("ERROR", "CRITICAL"):
                following = lines[i + 1 : i + 80]
                if not any(_ERROR_RECORD.match(later) for later in following):
                    out.append("\n".join(lines[i : i + 40]))
        return out
