"""The upload memory benchmark (issue #13): peak RSS of a real ``python -m server serve`` while
it refuses uploads meant to exhaust its memory, against the same process idle.

    python -m tests.bench.bench_upload_rss [--limit-mib 512] [--goal-mib 300] [--output ...]

The server: the demo seeded once (``demo --seed-only``, a small CT), then ``serve`` with an
imaging limit of ``--limit-mib`` (512 MiB), the SFU in-process. Warm-up: one real DICOM file
uploaded and stored (pydicom and the upload path loaded), then the idle RSS is read.

The refusals, each to ``POST /api/cases/{id}/imaging`` as the coordinator, one at a time:

- 1 GiB declared: a 1 GiB part with its Content-Length sent (refused before it is read);
- 1 GiB streamed: the same, chunked, so the server reads up to its limit before refusing;
- zip ×1000: a 10 MB zip whose ten entries inflate ×1000 each, sizes declared honestly;
- zip that lies: the same entries declaring 40 MB each (within ratio and limit), which inflate
  past that (the server stops at the declared size: the CRC no longer matches);
- zip at the edge: a 5 MB zip that really expands ×100 to 500 MB (within every limit), expanded
  to the spool and then refused as not DICOM.

Clients generate every body as they send it (1 MiB chunks of one buffer; the zips are built from
one deflate stream of zeros, repeated). Peak RSS: /proc/PID/status sampled every 5 ms, and the
kernel's VmHWM after a reset (clear_refs 5), whichever is higher. Prints a table, writes
``tests/bench/results/upload_rss.json``; exits 1 if any refusal is not the expected status or
any peak is more than ``--goal-mib`` above idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from server.demo import DEMO_PASSWORD
from server.imaging.phantom import write_ct_series

from .bench_sync import RESULTS, ROOT, ServerProcess

MIB = 1024 * 1024
GIB = 1024 * MIB
BOUNDARY = "bench-upload-boundary"


# Bodies, generated as they are sent.


def _head(filename: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


async def _big_part(size: int) -> AsyncIterator[bytes]:
    yield _head("big.dcm")
    chunk = b"\0" * MIB
    for _ in range(size // MIB):
        yield chunk
    yield TAIL


@dataclass(frozen=True)
class Entry:
    """One zip entry: its (already compressed) bytes and what its headers declare."""

    name: str
    method: int  # 0 stored, 8 deflated
    data: bytes
    crc: int
    size: int  # the declared uncompressed size


def _zeros_deflated(size: int) -> tuple[bytes, int]:
    """``size`` zero bytes as a raw deflate stream, and their CRC-32."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"\0" * MIB
    parts, crc = [], 0
    for _ in range(size // MIB):
        parts.append(packer.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    parts.append(packer.flush())
    return b"".join(parts), crc


def _zip(entries: list[Entry]) -> bytes:
    """A zip of ``entries`` as given (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16), sizes and all."""
    body, directory = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode()
        offset = len(body)
        fields = struct.pack("<HHHHIII", 0, e.method, 0, 0, e.crc, len(e.data), e.size)
        body += b"PK\x03\x04" + struct.pack("<H", 20) + fields
        body += struct.pack("<HH", len(name), 0) + name + e.data
        directory += b"PK\x01\x02" + struct.pack("<HH", 20, 20) + fields
        directory += struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<HHHHIIH", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return bytes(body + directory + b"PK\x05\x06" + end)


def hostile_zips() -> dict[str, bytes]:
    zeros, crc = _zeros_deflated(GIB)  # ~1 MB
    honest = [Entry(f"{i}.dcm", 8, zeros, crc, GIB) for i in range(10)]
    lying = [Entry(f"{i}.dcm", 8, zeros, crc, 40 * MIB) for i in range(10)]
    edge_zeros, edge_crc = _zeros_deflated(500 * MIB)
    noise = os.urandom(5 * MIB)
    edge = [
        Entry("noise.dcm", 0, noise, zlib.crc32(noise), len(noise)),
        Entry("zeros.dcm", 8, edge_zeros, edge_crc, 500 * MIB),
    ]
    return {"zip ×1000": _zip(honest), "zip that lies": _zip(lying), "zip at the edge": _zip(edge)}


async def _zip_part(name: str, data: bytes) -> AsyncIterator[bytes]:
    yield _head(name)
    for at in range(0, len(data), MIB):
        yield data[at : at + MIB]
    yield TAIL


# Memory of the server process.


class PeakRss:
    """The highest RSS of process ``pid`` while inside: sampled, and the kernel's high-water
    mark after a reset."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _status(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as fp:
            for line in fp:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def rss(self) -> int:
        return self._status("VmRSS")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        with open(f"/proc/{self.pid}/clear_refs", "w") as fp:
            fp.write("5")  # resets VmHWM to the current RSS
        self.peak = self.rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.peak = max(self.peak, self._status("VmHWM"))


# The run.


@dataclass
class Outcome:
    name: str
    expected: int
    status: int | str = ""
    detail: str = ""
    seconds: float = 0.0
    peak: int = 0


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    body: AsyncIterator[bytes],
    length: int | None,
) -> tuple[int | str, str]:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    if length is not None:
        headers["Content-Length"] = str(length)
    try:
        async with http.post(url, data=body, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, str(json.loads(text).get("detail", ""))[:120]
            except ValueError:
                return resp.status, text[:120]
    except (aiohttp.ClientError, ConnectionError) as exc:
        # The server may close the connection once it has answered a body it will not read.
        return f"closed ({type(exc).__name__})", ""


async def run(url: str, pid: int, limit: int) -> tuple[int, list[Outcome]]:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout) as http:
        async with http.post(
            "/api/login", json={"username": "coordinator", "password": DEMO_PASSWORD}
        ) as resp:
            token = (await resp.json())["token"]
        async with http.get(
            "/api/cases",
            params={"state": "in_preparation"},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            listed = await resp.json()
        if "items" not in listed or not listed["items"]:
            raise RuntimeError(f"no preparing case to upload to: {listed}")
        case_id = listed["items"][0]["id"]
        upload = f"/api/cases/{case_id}/imaging"
        with tempfile.TemporaryDirectory() as tmp:
            warm = write_ct_series(Path(tmp), slices=1, size=64)[0].read_bytes()
        status, detail = await _post(http, upload, token, _zip_part("warm.dcm", warm), None)
        if status != 201:
            raise RuntimeError(f"warm-up upload: {status} {detail}")
        idle = PeakRss(pid).rss()
        zips = await asyncio.to_thread(hostile_zips)
        big = len(_head("big.dcm")) + GIB + len(TAIL)
        cases: list[tuple[str, int, Callable[[], AsyncIterator[bytes]], int | None]] = [
            ("1 GiB declared", 413, lambda: _big_part(GIB), big),
            ("1 GiB streamed", 413, lambda: _big_part(GIB), None),
        ]
        expected = {"zip ×1000": 413, "zip that lies": 422, "zip at the edge": 422}
        for name, data in zips.items():
            cases.append((name, expected[name], lambda n=name, d=data: _zip_part(n, d), None))
        outcomes = []
        for name, want, body, length in cases:
            outcome = Outcome(name, want)
            started = time.monotonic()
            with PeakRss(pid) as rss:
                outcome.status, outcome.detail = await _post(http, upload, token, body(), length)
            outcome.seconds = time.monotonic() - started
            outcome.peak = rss.peak
            outcomes.append(outcome)
            print(f"  {name}: {outcome.status} in {outcome.seconds:.1f} s", flush=True)
    return idle, outcomes


def _report(idle: int, outcomes: list[Outcome], goal: int) -> bool:
    print(f"\nidle RSS after warm-up: {idle / MIB:.0f} MiB; goal: peak < idle + {goal / MIB:.0f}")
    print(f"{'upload':<18} {'status':>8} {'peak MiB':>9} {'above idle':>11} {'s':>6}  detail")
    good = True
    for o in outcomes:
        above = o.peak - idle
        ok = o.status == o.expected and above < goal
        good &= ok
        print(
            f"{o.name:<18} {o.status!s:>8} {o.peak / MIB:>9.0f} {above / MIB:>11.0f} "
            f"{o.seconds:>6.1f}  {o.detail}{'' if ok else '  <-- FAILED'}"
        )
    return good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit-mib", type=int, default=512, help="the server's imaging limit")
    parser.add_argument("--goal-mib", type=int, default=300, help="allowed peak above idle")
    parser.add_argument("--output", type=Path, default=RESULTS / "upload_rss.json")
    # The run is short already; accepted so that `make bench BENCH_ARGS=--quick` runs it too.
    parser.add_argument("--quick", action="store_true", help="the same run (it is quick)")
    args = parser.parse_args()
    limit, goal = args.limit_mib * MIB, args.goal_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    server: ServerProcess | None = None
    try:
        data = work / "data"
        subprocess.run(
            [sys.executable, "-m", "server", "demo", "--seed-only", "--data-dir", str(data)]
            + ["--demo-ct", "2x64", "--demo-password", DEMO_PASSWORD],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        server = ServerProcess(
            "eboard-upload",
            ["server", "serve", "--data-dir", str(data), "--media", "in-process"]
            + ["--max-imaging-upload-bytes", str(limit)],
            work,
        )
        server.start()
        print(f"server pid {server.pid}, imaging limit {args.limit_mib} MiB", flush=True)
        idle, outcomes = asyncio.run(run(server.url, server.pid, limit))
        good = _report(idle, outcomes, goal)
        results: dict[str, Any] = {
            "machine": platform.platform(),
            "python": platform.python_version(),
            "limit_bytes": limit,
            "goal_above_idle_bytes": goal,
            "idle_rss_bytes": idle,
            "uploads": [
                {
                    "name": o.name,
                    "expected": o.expected,
                    "status": o.status,
                    "detail": o.detail,
                    "seconds": round(o.seconds, 2),
                    "peak_rss_bytes": o.peak,
                    "above_idle_bytes": o.peak - idle,
                }
                for o in outcomes
            ],
            "ok": good,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {args.output}")
        return 0 if good else 1
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
