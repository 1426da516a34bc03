"""The export benchmark (issue #6): bulk export of 1,000 synthetic finalized notes through a real
``python -m server serve`` — notes per second for each format (signed JSON, PDF, FHIR, HL7 v2),
and whether the PDF renderer blocks the server's event loop: the socket.io round trip of a
cheap event during each bulk export against the same with the server idle, in one run.

    python -m tests.bench.bench_export [--quick] [--notes 1000] [--formats json,pdf,fhir,hl7] ...

The data: the demo seeded once (``demo --seed-only``: DEMO-0001 with a real signed plan), then
``--notes`` more finalized cases written here through ``Services``: a patient, a case, its note
and an agreed plan version 1 whose signed document is DEMO-0001's with the case number (and a
word of the rationale) changed and its instants shifted, signed as ``PlanDesk`` signs, its
signing time spread over the last 30 days. A few are checked with ``plans.check``.

The run: one server, the records clerk's bulk exports (``POST /api/exports``, polled until
done) one format after another, each over every plan; all the while a probe client (socket.io,
websocket, ``/board``) sends ``note-focus`` every 50 ms, open loop, and times its ack (the
server refuses it at once — no note is open — but only after it has crossed the event loop).
Prints a table, writes ``tests/bench/results/export.json``; exits 1 if a plan failed or an
export's count is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import socketio
from sqlmodel import select

from server.config import Settings
from server.demo import DEMO_PASSWORD
from server.models import AgreedPlan, Case, Institution, Note, Patient
from server.notes.signature import sign_version, verify_file
from server.services import Services
from server.signing import keys_from_jwks

from .bench_sync import NAMESPACE, RESULTS, ROOT, ServerProcess, percentile
from .machine import machine_cpu, process_cpu, wait_quiet
from .report import SATURATED, ratio

FORMATS = ("json", "pdf", "fhir", "hl7")
DEMO_CASE = "DEMO-0001"
CLERK = "records"
PROBE_EVENT = "note-focus"  # its own rate allowance (100/s); refused at once with no note open
# PlanDesk seals the signed document under this field name (server/notes/plan.py).
DOCUMENT_FIELD = "agreed_plan"
SPREAD_DAYS = 30


# The synthetic plans.


def _shift(instant: str | None, by: timedelta) -> str | None:
    if instant is None:
        return None
    at = datetime.fromisoformat(instant.replace("Z", "+00:00")) + by
    return at.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _payload(demo: dict[str, Any], number: str, n: int, by: timedelta) -> dict[str, Any]:
    """DEMO-0001's payload as case ``number``'s: its rationale varied, its instants moved."""
    payload = copy.deepcopy(demo)
    payload["case"]["number"] = number
    note = payload["note"]
    note["rationale"], changed = re.subn(r"FEV1 \d+%", f"FEV1 {60 + n % 35}%", note["rationale"])
    if not changed:
        note["rationale"] += f" (synthetic {n})"
    if payload.get("session"):
        for key in ("start_at", "end_at"):
            payload["session"][key] = _shift(payload["session"][key], by)
    for person in payload["attendance"]:
        for key in ("joined_at", "left_at"):
            person[key] = _shift(person[key], by)
    payload["finalized_at"] = _shift(payload["finalized_at"], by)
    return payload


async def make_plans(data_dir: Path, count: int, seed: int) -> dict[str, Any]:
    """``count`` finalized cases beside DEMO-0001, in three transactions; every plan's signing
    time (UTC) and DEMO-0001's case id."""
    services = Services.build(Settings(data_dir=data_dir))
    rng = random.Random(seed)
    cipher = services.cipher
    try:
        async with services.db.read() as db:
            demo = (await db.exec(select(Case).where(Case.number == DEMO_CASE))).one()
            plan = (await db.exec(select(AgreedPlan).where(AgreedPlan.case_id == demo.id))).one()
            note = (await db.exec(select(Note).where(Note.case_id == demo.id))).one()
            home = await db.get(Institution, demo.home_institution_id)
            assert home is not None and home.id is not None and demo.id is not None
        signed_demo = services.plans.signed(plan)
        summary = cipher.open("case.summary", demo.clinical_summary_enc)
        translation = (
            cipher.open("case.translation", demo.summary_translation_enc)
            if demo.summary_translation_enc
            else None
        )
        now = datetime.now(UTC).replace(microsecond=0)
        signed_at = [now - timedelta(days=rng.uniform(0, SPREAD_DAYS)) for _ in range(count)]
        numbers = [f"BENCH-{n + 1:05d}" for n in range(count)]
        async with services.db.write() as db:
            patients = [
                Patient(
                    institution_id=home.id,
                    mrn_hash=cipher.lookup_hash(f"mrn:{home.id}", f"BX{n + 1:07d}"),
                    mrn_enc=cipher.seal("patient.mrn", f"BX{n + 1:07d}"),
                    name_enc=cipher.seal("patient.name", f"Bench Patient {n + 1}"),
                    birth_date_enc=cipher.seal(
                        "patient.birth_date",
                        date(1940 + n % 50, 1 + n % 12, 1 + n % 28).isoformat(),
                    ),
                    sex_enc=cipher.seal("patient.sex", ("female", "male")[n % 2]),
                    created_at=at - timedelta(days=rng.uniform(10, 40)),
                )
                for n, at in enumerate(signed_at)
            ]
            db.add_all(patients)
            await db.flush()
            cases = []
            for number, patient, at in zip(numbers, patients, signed_at, strict=True):
                assert patient.id is not None
                created = patient.created_at
                cases.append(
                    Case(
                        number=number,
                        board_id=demo.board_id,
                        patient_id=patient.id,
                        home_institution_id=home.id,
                        state="finalized",
                        clinical_question=demo.clinical_question,
                        clinical_summary_enc=cipher.seal("case.summary", summary),
                        summary_language=demo.summary_language,
                        summary_translation_enc=cipher.seal("case.translation", translation)
                        if translation
                        else None,
                        translation_language=demo.translation_language,
                        translator=demo.translator,
                        summary_updated_at=created,
                        consent_external=demo.consent_external,
                        consent_date=demo.consent_date,
                        created_by=demo.created_by,
                        created_at=created,
                        updated_at=at,
                    )
                )
            db.add_all(cases)
            await db.flush()
            demo_at = plan.signed_at.replace(tzinfo=UTC)
            signed_docs = []
            for n, (case, at) in enumerate(zip(cases, signed_at, strict=True)):
                assert case.id is not None
                payload = _payload(signed_demo["payload"], case.number, n, at - demo_at)
                signed = sign_version(payload, lambda data: services.signing.sign(home.code, data))
                signed_docs.append(signed)
                raw = json.dumps(signed, ensure_ascii=False, separators=(",", ":")).encode()
                db.add(
                    Note(
                        case_id=case.id,
                        template=note.template,
                        status="finalized",
                        created_at=case.created_at,
                        updated_at=at,
                    )
                )
                db.add(
                    AgreedPlan(
                        case_id=case.id,
                        version=1,
                        hash=signed["hash"],
                        kid=signed["signature"]["kid"],
                        document_enc=cipher.seal_bytes(DOCUMENT_FIELD, raw),
                        session_id=plan.session_id,
                        signed_by=plan.signed_by,
                        signed_at=at,
                    )
                )
        checked = sorted({0, count // 2, count - 1}) if count else []
        async with services.db.read() as db:
            for n in checked:
                row = (
                    await db.exec(
                        select(AgreedPlan).where(AgreedPlan.hash == signed_docs[n]["hash"])
                    )
                ).one()
                problems = services.plans.check(services.plans.signed(row))
                if problems:
                    raise RuntimeError(f"synthetic plan {numbers[n]} does not verify: {problems}")
        return {
            "demo_case_id": demo.id,
            "signed_at": [demo_at, *signed_at],
            "checked": [numbers[n] for n in checked],
        }
    finally:
        await services.db.close()


# The probe: a socket.io round trip every 50 ms, open loop.


@dataclass(eq=False)
class Probe:
    """Sends ``PROBE_EVENT`` every ``interval`` seconds without waiting for acks; each send
    and ack time is this process's ``perf_counter``."""

    client: socketio.AsyncClient
    interval: float
    sent: list[float] = field(default_factory=list)
    acked: dict[int, float] = field(default_factory=dict)  # index into sent → ack time
    task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, token: str, interval: float) -> Probe:
        client = socketio.AsyncClient(reconnection=False)
        client.on("error", lambda _data: None, namespace=NAMESPACE)  # the refusal, also sent
        await client.connect(
            url, auth={"token": token}, namespaces=[NAMESPACE], transports=["websocket"]
        )
        probe = cls(client, interval)
        probe.task = asyncio.create_task(probe._run())
        return probe

    async def _run(self) -> None:
        start = time.perf_counter()
        data = {"case_id": 1, "field": None}
        for k in range(1_000_000_000):
            await asyncio.sleep(max(0.0, start + k * self.interval - time.perf_counter()))
            index = len(self.sent)
            self.sent.append(time.perf_counter())

            def acked(*_reply: Any, index: int = index) -> None:
                self.acked[index] = time.perf_counter()

            await self.client.emit(PROBE_EVENT, data, namespace=NAMESPACE, callback=acked)

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Round trips (ms) of the probes sent in [t0, t1)."""
        indices = [i for i, t in enumerate(self.sent) if t0 <= t < t1]
        rtts = sorted((self.acked[i] - self.sent[i]) * 1e3 for i in indices if i in self.acked)
        return {
            "probes": len(indices),
            "unanswered": sum(i not in self.acked for i in indices),
            "rtt_p50_ms": percentile(rtts, 50),
            "rtt_p90_ms": percentile(rtts, 90),
            "rtt_p99_ms": percentile(rtts, 99),
            "rtt_max_ms": round(rtts[-1], 2) if rtts else None,
            "rtt_mean_ms": round(statistics.fmean(rtts), 2) if rtts else None,
            "over_100ms": sum(r > 100 for r in rtts),
        }

    def slow(self, t0: float, t1: float, over_ms: float = 100.0) -> list[tuple[float, float]]:
        """(send time, round trip ms) of the probes sent in [t0, t1) slower than ``over_ms``."""
        return [
            (self.sent[i], (self.acked[i] - self.sent[i]) * 1e3)
            for i, t in enumerate(self.sent)
            if t0 <= t < t1 and i in self.acked and self.acked[i] - t > over_ms / 1e3
        ]

    async def close(self, drain: float = 2.0) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await asyncio.sleep(drain)  # the last acks
        await self.client.disconnect()


# CPU accounting: the server, its renderer workers, the machine.


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


@dataclass(frozen=True)
class Cpu:
    at: float
    server: float
    workers: float
    me: float  # this runner (the probe and the polling)
    machine: tuple[float, float]

    @classmethod
    def now(cls, pid: int) -> Cpu:
        workers = 0.0
        for child in descendants(pid):
            try:
                workers += process_cpu(child)
            except OSError:
                pass  # gone meanwhile
        me = process_cpu(os.getpid())
        return cls(time.perf_counter(), process_cpu(pid), workers, me, machine_cpu())

    def since(self, before: Cpu) -> dict[str, float]:
        seconds = max(1e-9, self.at - before.at)
        busy = (self.machine[0] - before.machine[0]) / max(1, self.machine[1] - before.machine[1])
        server = 100 * (self.server - before.server) / seconds
        # A worker that started during the window counts from zero: its whole CPU is in it.
        workers = 100 * max(0.0, self.workers - before.workers) / seconds
        me = 100 * (self.me - before.me) / seconds
        cores = 100 * busy * (os.cpu_count() or 1)
        return {
            "server_cpu_pct": round(server, 1),
            "workers_cpu_pct": round(workers, 1),
            "runner_cpu_pct": round(me, 1),
            "machine_busy_pct": round(100 * busy, 1),
            # Everything else the machine did, % of one core: this machine may be shared.
            "others_during_pct": round(max(0.0, cores - server - workers - me), 1),
        }


@dataclass(eq=False)
class Timeline:
    """CPU second by second, to tell what else ran when a probe was slow."""

    pid: int
    samples: list[Cpu] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append(Cpu.now(self.pid))
            await asyncio.sleep(1.0)

    def around(self, at: float) -> dict[str, float] | None:
        """The CPU figures of the sampled second holding ``at``."""
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            if before.at <= at < after.at:
                return after.since(before)
        return None

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


# The phases.


@dataclass
class Clerk:
    """The records clerk's HTTP session with the server."""

    http: aiohttp.ClientSession
    headers: dict[str, str]

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, path, json=body, headers=self.headers) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
            if resp.content_type == "application/json":
                return await resp.json()
            return await resp.read()


async def idle(probe: Probe, pid: int, seconds: float) -> dict[str, Any]:
    before = Cpu.now(pid)
    await asyncio.sleep(seconds)
    after = Cpu.now(pid)
    return {"window": (before.at, after.at), "seconds": round(after.at - before.at, 1)} | (
        after.since(before)
    )


async def bulk(
    clerk: Clerk, probe: Probe, pid: int, fmt: str, days: tuple[date, date], poll: float
) -> dict[str, Any]:
    """One bulk export over ``days`` (UTC), polled until it is no longer running."""
    body = {"from": str(days[0]), "to": str(days[1]), "format": fmt, "language": "both"}
    before = Cpu.now(pid)
    job = await clerk.api("POST", "/api/exports?tz=UTC", body)
    shown = time.perf_counter()
    while job["state"] == "running":
        await asyncio.sleep(poll)
        job = await clerk.api("GET", f"/api/exports/{job['id']}")
        if time.perf_counter() - shown > 30:
            shown = time.perf_counter()
            print(f"  {fmt}: {job['done']}/{job['total']}", flush=True)
    after = Cpu.now(pid)
    seconds = after.at - before.at
    return {
        "window": (before.at, after.at),
        "job": job["id"],
        "state": job["state"],
        "error": job["error"],
        "total": job["total"],
        "done": job["done"],
        "failed": job["failed"][:10],
        "failed_count": len(job["failed"]),
        "seconds": round(seconds, 1),
        "notes_per_s": round(job["done"] / seconds, 2),
        "ms_per_note": round(1e3 * seconds / max(1, job["done"]), 1),
    } | after.since(before)


async def _download(clerk: Clerk, job: str, folder: Path) -> Path:
    """The finished zip of bulk export ``job``, downloaded as its owner does (sealed on the
    server's disk, so never read from there)."""
    path = folder / f"{job}.zip"
    async with clerk.http.get(f"/api/exports/{job}/file", headers=clerk.headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"download of {job}: {resp.status} {await resp.text()}")
        with path.open("wb") as out:
            async for chunk in resp.content.iter_chunked(1 << 20):
                out.write(chunk)
    return path


def check_zip(path: Path, expected: int, jwks: Any) -> dict[str, Any]:
    """The finished zip: its manifest lists every plan; a signed JSON file verifies."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        files = manifest["files"]
        out = {
            "zip_bytes": path.stat().st_size,
            "files": len(files),
            "files_ok": len(files) == expected and not manifest["failed"],
            "mean_file_bytes": round(statistics.fmean(f["bytes"] for f in files)) if files else 0,
        }
        if (
            files
            and files[0]["file"].endswith(".json")
            and not files[0]["file"].endswith("fhir.json")
        ):
            report = verify_file(archive.read(files[-1]["file"]), keys_from_jwks(jwks))
            out["verified"] = report.ok
            out["files_ok"] = out["files_ok"] and report.ok
    return out


def slow_figures(probe: Probe, timeline: Timeline, t0: float, t1: float) -> dict[str, Any]:
    """The probes over 100 ms: when (s into the phase), and what the machine did that second;
    how many bursts they came in (a burst: slow probes less than a second apart)."""
    slow = probe.slow(t0, t1)
    rows = []
    for at, rtt in slow:
        second = timeline.around(at) or {}
        rows.append(
            {
                "at_s": round(at - t0, 2),
                "rtt_ms": round(rtt, 1),
                "machine_busy_pct": second.get("machine_busy_pct"),
                "others_pct": second.get("others_during_pct"),
                "server_cpu_pct": second.get("server_cpu_pct"),
            }
        )
    bursts = sum(1 for k, (at, _) in enumerate(slow) if k == 0 or at - slow[k - 1][0] > 1.0)
    others = [r["others_pct"] for r in rows if r["others_pct"] is not None]
    return {
        "slow_bursts": bursts,
        "slow_others_pct_mean": round(statistics.fmean(others), 1) if others else None,
        "slow": rows[:200],
    }


def days_for(signed_at: list[datetime], limit: int) -> tuple[tuple[date, date], int]:
    """The UTC days holding the newest ``limit`` plans (0: all), and how many plans they hold."""
    ordered = sorted(signed_at, reverse=True)
    first = ordered[min(len(ordered), limit or len(ordered)) - 1].date()
    return (first, ordered[0].date()), sum(at.date() >= first for at in ordered)


async def session(args: argparse.Namespace, server: ServerProcess, corpus: dict[str, Any]) -> Any:
    """Everything measured against one running server."""
    data_dir: Path = args.work / "data"
    async with aiohttp.ClientSession(base_url=server.url) as http:
        login = {"username": CLERK, "password": DEMO_PASSWORD}
        async with http.post("/api/login", json=login) as resp:
            token = str((await resp.json())["token"])
        clerk = Clerk(http, {"Authorization": f"Bearer {token}"})
        jwks = await clerk.api("GET", "/api/keys")
        # The renderer's worker starts on first use: a steady server has one, so warm it.
        t0 = time.perf_counter()
        path = f"/api/cases/{corpus['demo_case_id']}/plan/export?format=pdf&language=both"
        first = await clerk.api("GET", path)
        warmup = {"first_pdf_s": round(time.perf_counter() - t0, 2), "pdf_bytes": len(first)}
        print(f"first PDF (starts the renderer's worker): {warmup['first_pdf_s']} s", flush=True)
        probe = await Probe.connect(server.url, token, args.interval)
        timeline = Timeline(server.pid)
        timeline.start()
        phases: dict[str, dict[str, Any]] = {}
        try:
            others = await wait_quiet(args.quiet_wait)
            phases["idle"] = await idle(probe, server.pid, args.idle)
            phases["idle"]["others_before_pct"] = others
            for fmt in args.formats:
                limit = args.hl7_notes if fmt == "hl7" else 0
                days, expected = days_for(corpus["signed_at"], limit)
                others = await wait_quiet(args.quiet_wait)
                print(f"{fmt}: {expected} plans, {days[0]}..{days[1]}", flush=True)
                cell = await bulk(clerk, probe, server.pid, fmt, days, args.poll)
                cell |= {"expected": expected, "others_before_pct": others}
                if cell["state"] == "done":
                    downloaded = await _download(clerk, cell["job"], data_dir.parent)
                    try:
                        cell |= check_zip(downloaded, expected, jwks)
                    finally:
                        downloaded.unlink()
                cell["count_ok"] = (
                    cell["state"] == "done"
                    and cell["total"] == cell["done"] == expected
                    and not cell["failed_count"]
                    and cell.get("files_ok", False)
                )
                phases[fmt] = cell
            phases["idle after"] = await idle(probe, server.pid, args.idle)
        finally:
            await probe.close()
            await timeline.stop()
    for cell in phases.values():
        window = cell.pop("window")
        cell |= probe.window(*window) | slow_figures(probe, timeline, *window)
    base = phases["idle"]
    for cell in phases.values():
        cell["p50_vs_idle"] = ratio(cell["rtt_p50_ms"], base["rtt_p50_ms"])
        cell["p99_vs_idle"] = ratio(cell["rtt_p99_ms"], base["rtt_p99_ms"])
    return warmup, phases


# The table and the whole benchmark.

COLUMNS = (  # heading, key, format
    ("plans", "done", "d"),
    ("seconds", "seconds", ".1f"),
    ("notes/s", "notes_per_s", ".2f"),
    ("probes", "probes", "d"),
    ("RTT p50", "rtt_p50_ms", ".1f"),
    ("p99", "rtt_p99_ms", ".1f"),
    ("max", "rtt_max_ms", ".0f"),
    (">100ms", "over_100ms", "d"),
    ("p50/idle", "p50_vs_idle", ".2f"),
    ("p99/idle", "p99_vs_idle", ".2f"),
    ("srv CPU%", "server_cpu_pct", ".0f"),
    ("wkr CPU%", "workers_cpu_pct", ".0f"),
    ("machine%", "machine_busy_pct", ".0f"),
    ("others%", "others_during_pct", ".0f"),
)


def table(phases: dict[str, dict[str, Any]]) -> str:
    def cell(value: Any, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    head = f"{'phase':<10} " + "  ".join(f"{h:>8}" for h, _, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, row in phases.items():
        values = "  ".join(f"{cell(row.get(k), f):>8}" for _, k, f in COLUMNS)
        lines.append(f"{name:<10} {values}")
    return "\n".join(lines)


def notes(phases: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    found = []
    for name, row in phases.items():
        if "expected" in row and not row["count_ok"]:
            found.append(
                f"{name}: {row['state']}, {row['done']}/{row['total']} done, "
                f"{row['failed_count']} failed, {row['expected']} expected: {row['failed'][:3]}"
            )
        if row.get("unanswered"):
            found.append(f"{name}: {row['unanswered']} probes were never answered")
        if row.get("machine_busy_pct", 0) >= SATURATED:
            found.append(
                f"{name}: the machine was saturated ({row['machine_busy_pct']:.0f} % of all "
                f"cores busy; other programs {row['others_during_pct']:.0f} % of a core): its "
                "figures measure the machine's limit too"
            )
        if row.get("over_100ms"):
            found.append(
                f"{name}: {row['over_100ms']} probes over 100 ms in {row['slow_bursts']} "
                f"burst(s); other programs used {row['slow_others_pct_mean']} % of a core in "
                f"those seconds, {row['others_during_pct']:.0f} % over the phase"
            )
    if "hl7" in phases and args.hl7_notes:
        found.append(
            f"hl7 ran over the newest {phases['hl7']['expected']} plans only (--hl7-notes)"
        )
    return found


def seed(work: Path) -> Path:
    data = work / "data"
    command = ["server", "demo", "--data-dir", str(data), "--demo-ct", "0", "--seed-only"]
    with (work / "seed.log").open("wb") as out:
        subprocess.run(
            [sys.executable, "-m", *command], check=True, cwd=ROOT, stdout=out, stderr=out
        )
    return data


def measured(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    data = seed(args.work)
    corpus = asyncio.run(make_plans(data, args.notes, args.seed))
    made = round(time.perf_counter() - t0, 1)
    print(f"{args.notes} synthetic plans + {DEMO_CASE} ready in {made} s", flush=True)
    command = ["server", "serve", "--data-dir", str(data), "--media", "in-process"]
    server = ServerProcess("eboard", command, args.work)
    server.start()
    try:
        warmup, phases = asyncio.run(session(args, server, corpus))
    finally:
        server.stop()
    log = server.log.read_text(errors="replace").splitlines()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "python_socketio": metadata.version("python-socketio"),
            "weasyprint": metadata.version("weasyprint"),
        },
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        | {
            "plans": len(corpus["signed_at"]),
            "data_s": made,
            "verified_with_plans_check": corpus["checked"],
            "server": "python -m server serve (SQLite, SFU in-process, default export workers)",
            "probe": f"{PROBE_EVENT} every {args.interval * 1e3:.0f} ms with an ack, open loop; "
            "refused at once (no note open) after crossing the event loop",
            "bulk": "POST /api/exports over the plans' UTC days, language both, audience home, "
            f"polled every {args.poll} s; notes/s = plans done / (POST → done seen)",
            "workers_cpu_pct": "CPU of the server's child processes (renderer workers), "
            "% of one core",
            "others_during_pct": "all cores' busy time less the server's, its workers' and "
            "this runner's, % of one core: other programs (this machine may be shared)",
            "slow": "probes over 100 ms: seconds into the phase, and that second's CPU",
        },
        "warmup": warmup,
        "phases": phases,
        "server_log_problems": [x for x in log if "ERROR" in x or "Traceback" in x][:20],
        "notes": notes(phases, args),
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 notes, 3 s idle")
    parser.add_argument("--notes", type=int, default=1000, help="synthetic finalized notes")
    parser.add_argument("--formats", default=",".join(FORMATS), help="in this order")
    parser.add_argument(
        "--hl7-notes", type=int, default=0, help="hl7 over the newest N plans only (0: all)"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, seconds")
    parser.add_argument("--interval", type=float, default=0.05, help="between probes, seconds")
    parser.add_argument("--poll", type=float, default=0.2, help="between progress polls")
    parser.add_argument("--quiet-wait", type=float, default=10.0, help="for others, seconds")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--keep-logs", action="store_true", help="keep the data and server log")
    parser.add_argument("--output", type=Path, default=RESULTS / "export.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.notes, args.idle = 20, 3.0
    args.formats = [f for f in args.formats.split(",") if f]
    unknown = [f for f in args.formats if f not in FORMATS]
    if unknown:
        parser.error(f"unknown format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    args.work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        report = measured(args)
    except BaseException:
        print(f"logs kept in {args.work}", file=sys.stderr)
        raise
    if not args.keep_logs:
        shutil.rmtree(args.work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    phases = report["phases"]
    print(
        f"\nBulk export of {report['config']['plans']} finalized plans, one format at a time; "
        f"socket.io round trip every {args.interval * 1e3:.0f} ms (ms)"
    )
    print(table(phases))
    for line in report["notes"]:
        print("note:", line)
    print(f"written to {args.output}" + (f" (logs in {args.work})" if args.work.exists() else ""))
    ok = all(row["count_ok"] for row in phases.values() if "expected" in row)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
