"""The imaging benchmark: series delivery — a viewer opening a series fetches its metadata, then
frame 1 of every instance with 6 requests in flight — for the demo's 120-slice 512² CT (native
and JPEG-LS), from eBoard's /dicom-web/ (a real ``python -m server serve``) and from Orthanc
(Debian's ``orthanc`` with ``orthanc-dicomweb``) holding the same files, in one run.

    python -m tests.bench.bench_imaging [--reps 15] [--parallel 6] [--quick]

Runs alternate between the two servers, so background load falls on both alike. Frames are
asked for as stored (``transfer-syntax=*``); the warm-up run checks every frame is the source's
bytes. Prints a table and writes ``tests/bench/results/imaging.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
from pydicom.encaps import generate_frames
from sqlmodel import col, select

from server.config import Settings
from server.db import Database
from server.demo import DEMO_PASSWORD
from server.imaging.store import DicomStore
from server.keys import KeyRing
from server.models import DicomInstance, DicomSeries

from .orthanc import Orthanc, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "bench" / "results"
AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
NATIVE = "1.2.840.10008.1.2.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Series:
    """One stored series of the demo study, and the bytes each instance's frame 1 must be."""

    kind: str
    study_uid: str
    series_uid: str
    files: list[Path]
    frames: dict[str, bytes]


@dataclass(frozen=True)
class Target:
    """A DICOMweb server under test: its root, how to authenticate, and its process."""

    name: str
    root: str
    headers: dict[str, str]
    pid: int


@dataclass(frozen=True)
class Delivery:
    seconds: float
    metadata_seconds: float
    bytes: int
    requests: int
    cpu_seconds: float  # the server process's CPU time during the delivery


# Data: the demo's own CT, seeded by the real CLI, so our server and Orthanc hold the same files.


def seed(data_dir: Path, ct: str, logs: Path) -> None:
    with (logs / "seed.log").open("wb") as log:
        subprocess.run(
            [sys.executable, "-m", "server", "demo", "--seed-only", "--data-dir", str(data_dir)]
            + ["--demo-ct", ct],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def stored_series(data_dir: Path, plain: Path) -> list[Series]:
    """The demo's original series (the de-identified copies made for external members left
    out), read back through the store, which keeps them sealed, into ``plain`` for Orthanc."""
    out = []
    for files in _unsealed(data_dir, plain):
        frames = {}
        for path in files:
            ds = pydicom.dcmread(path)
            syntax = str(ds.file_meta.TransferSyntaxUID)
            frames[str(ds.SOPInstanceUID)] = (
                ds.PixelData
                if syntax == NATIVE
                else next(generate_frames(ds.PixelData, number_of_frames=1))
            )
        kind = "native" if syntax == NATIVE else "JPEG-LS"
        out.append(Series(kind, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), files, frames))
    assert sorted(s.kind for s in out) == ["JPEG-LS", "native"], f"stored: {[s.kind for s in out]}"
    return sorted(out, key=lambda s: s.kind != "native")


def _unsealed(data_dir: Path, plain: Path) -> list[list[Path]]:
    """Per original series, its instances' files as uploaded, written to ``plain``."""
    store = DicomStore(data_dir / "imaging", KeyRing.load_or_create(data_dir))
    plain.mkdir(mode=0o700)
    series: dict[int, list[Path]] = {}
    for instance in asyncio.run(_originals(data_dir)):
        path = plain / f"{instance.id}.dcm"
        path.write_bytes(store.read_file(instance))
        series.setdefault(instance.series_id, []).append(path)
    return list(series.values())


async def _originals(data_dir: Path) -> list[DicomInstance]:
    db = Database(Settings(data_dir=data_dir).effective_database_url)
    try:
        async with db.read() as session:
            return list(
                await session.exec(
                    select(DicomInstance)
                    .where(
                        DicomInstance.series_id == DicomSeries.id,
                        col(DicomSeries.source_id).is_(None),
                    )
                    .order_by(col(DicomSeries.id), col(DicomInstance.id))
                )
            )
    finally:
        await db.close()


# Servers.


class EboardServer:
    """``python -m server serve`` on a free loopback port, logging to a file."""

    def __init__(self, data_dir: Path, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, seconds: float = 60.0) -> None:
        with (self.logs / "eboard.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--data-dir", str(self.data_dir)]
                + ["--host", "127.0.0.1", "--port", str(self.port), "--media", "in-process"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        wait_healthy(self.process, self.url, seconds, lambda: f"see {log.name}")

    def login(self, username: str) -> dict[str, str]:
        request = urllib.request.Request(
            f"{self.url}/api/login",
            data=json.dumps({"username": username, "password": DEMO_PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return {"Authorization": f"Bearer {json.loads(resp.read())['token']}"}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


# Measurement.


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs the machine keeps busy (everything else running here)."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))


async def deliver(target: Target, series: Series, parallel: int, verify: bool) -> Delivery:
    """Metadata, then frame 1 of every instance with ``parallel`` requests in flight, on fresh
    connections, as a viewer opening the series would."""
    base = f"{target.root}/studies/{series.study_uid}/series/{series.series_uid}"
    connector = aiohttp.TCPConnector(limit=parallel)
    cpu = cpu_seconds(target.pid)
    async with aiohttp.ClientSession(connector=connector, headers=target.headers) as http:
        start = time.perf_counter()
        async with http.get(
            f"{base}/metadata", headers={"Accept": "application/dicom+json"}
        ) as resp:
            assert resp.status == 200, f"{target.name} metadata: {resp.status}"
            body = await resp.read()
        sops = [item["00080018"]["Value"][0] for item in json.loads(body)]
        metadata_seconds = time.perf_counter() - start
        total = len(body)
        queue = list(reversed(sops))

        async def worker() -> int:
            received = 0
            while queue:
                sop = queue.pop()
                url = f"{base}/instances/{sop}/frames/1"
                async with http.get(url, headers={"Accept": AS_STORED}) as resp:
                    assert resp.status == 200, f"{target.name} frame: {resp.status}"
                    if verify:
                        reader = aiohttp.MultipartReader.from_response(resp)
                        part = await reader.next()
                        assert isinstance(part, aiohttp.BodyPartReader)
                        data = bytes(await part.read())
                        assert data == series.frames[sop], f"{target.name}: frame of {sop} differs"
                        received += len(data)
                    else:
                        received += len(await resp.read())
            return received

        total += sum(await asyncio.gather(*(worker() for _ in range(parallel))))
        seconds = time.perf_counter() - start
    assert len(sops) == len(series.files), f"{target.name} lists {len(sops)} instances"
    return Delivery(seconds, metadata_seconds, total, len(sops) + 1, cpu_seconds(target.pid) - cpu)


def summarise(runs: list[Delivery]) -> dict[str, Any]:
    times = sorted(r.seconds for r in runs)
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    megabytes = statistics.median(r.bytes for r in runs) / 1e6
    return {
        "runs": len(runs),
        "median_s": round(median, 4),
        "p90_s": round(p90, 4),
        "min_s": round(times[0], 4),
        "metadata_median_s": round(statistics.median(r.metadata_seconds for r in runs), 4),
        "mb_per_s": round(megabytes / median, 1),
        "megabytes": round(megabytes, 2),
        "requests": runs[0].requests,
        "server_cpu_s_median": round(statistics.median(r.cpu_seconds for r in runs), 3),
    }


async def measure(
    targets: list[Target], series: list[Series], reps: int, parallel: int
) -> dict[str, dict[str, Any]]:
    runs: dict[tuple[str, str], list[Delivery]] = {}
    for rep in range(reps + 1):  # the first is the warm-up, which checks every frame
        for s in series:
            order = targets if rep % 2 == 0 else list(reversed(targets))
            for target in order:
                done = await deliver(target, s, parallel, verify=rep == 0)
                if rep:
                    runs.setdefault((s.kind, target.name), []).append(done)
        print(f"  run {rep}/{reps}" + (" (warm-up, frames checked)" if rep == 0 else ""))
    out: dict[str, dict[str, Any]] = {}
    for s in series:
        row = {t.name: summarise(runs[(s.kind, t.name)]) for t in targets}
        ours, theirs = row["eboard"], row["orthanc"]
        row["ratio_eboard_over_orthanc"] = {
            "median": round(ours["median_s"] / theirs["median_s"], 2),
            "p90": round(ours["p90_s"] / theirs["p90_s"], 2),
        }
        out[s.kind] = row
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'series':<8} {'server':<8} {'median s':>9} {'p90 s':>8} {'MB/s':>7} "
        f"{'MB':>6} {'CPU s':>6} {'ours/Orthanc (median, p90)':>28}"
    ]
    for kind, row in results.items():
        ratio = row["ratio_eboard_over_orthanc"]
        for name in ("eboard", "orthanc"):
            r = row[name]
            lines.append(
                f"{kind:<8} {name:<8} {r['median_s']:>9.3f} {r['p90_s']:>8.3f} "
                f"{r['mb_per_s']:>7.1f} {r['megabytes']:>6.1f} {r['server_cpu_s_median']:>6.2f} "
                + (f"{ratio['median']:>19.2f}, {ratio['p90']:.2f}" if name == "eboard" else "")
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    missing = Orthanc.available()
    if missing:
        sys.exit(f"bench_imaging: {missing}")
    work = Path(tempfile.mkdtemp(prefix="bench-imaging-"))
    try:
        return measured(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measured(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data_dir = work / "data"
    print(f"seeding the demo with a {args.ct} CT (native and JPEG-LS) in {data_dir}")
    seed(data_dir, args.ct, work)
    series = stored_series(data_dir, work / "plain")
    background = busy_cpus()
    eboard = EboardServer(data_dir, work)
    with Orthanc() as orthanc:
        print(f"uploading {sum(len(s.files) for s in series)} files to Orthanc")
        orthanc.upload([f for s in series for f in s.files])
        eboard.start()
        try:
            assert orthanc.process is not None and eboard.process is not None
            targets = [
                Target(
                    "eboard",
                    f"{eboard.url}/dicom-web",
                    eboard.login("radiologist"),
                    eboard.process.pid,
                ),
                Target("orthanc", orthanc.dicomweb_url, {}, orthanc.process.pid),
            ]
            print(f"measuring: {args.reps} runs per series and server, {args.parallel} in flight")
            results = asyncio.run(measure(targets, series, args.reps, args.parallel))
        finally:
            eboard.stop()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "others_busy_cpus_at_start": round(background, 2),
        },
        "config": {
            "ct": args.ct,
            "reps": args.reps,
            "parallel_requests": args.parallel,
            "delivery": "series metadata, then frame 1 of every instance as stored "
            "(transfer-syntax=*), fresh connections per delivery",
            "eboard": "python -m server serve (one process, SQLite), token of a board specialist",
            "orthanc": f"{orthanc_version()} + DICOMweb plugin, default settings but "
            "HttpCompressionEnabled false, no authentication",
            "server_cpu_s": "CPU seconds the server process used per delivery",
        },
        "series": results,
    }


def orthanc_version() -> str:
    out = subprocess.run(["Orthanc", "--version"], capture_output=True, text=True).stdout
    return out.split("\n", 1)[0].strip() or "Orthanc"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="measured runs per series and server")
    parser.add_argument("--parallel", type=int, default=6, help="requests in flight")
    parser.add_argument("--ct", default="120x512", help="SLICESxPIXELS of the demo CT")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 runs, 40x256")
    parser.add_argument("--output", type=Path, default=RESULTS / "imaging.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.ct = 3, "40x256"
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(
        f"Imaging benchmark — series delivery of a {args.ct} CT, metadata + every frame, "
        f"{args.parallel} requests in flight, {args.reps} runs each; time per series"
    )
    print(table(report["series"]))
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
