"""The notes benchmark (issue #5): 15 writers each make 100 edits at once to one case's
consensus note on a real ``python -m server demo``; how long after the last edit all 15 replicas
and the server's note are identical (goal ≤ 200 ms on loopback), and that nothing was lost. One
writer alone making the same 100 edits is the baseline, in the same run.

    python -m tests.bench.bench_notes [--quick] [--repeat 3] [--clients 15] [--edits 100] ...

A writer is a real ``socketio.AsyncClient`` (websocket, ``/board``) with a pycrdt replica, all
on this process's event loop. An edit is one transaction on the replica, sent as a Yjs update
(``note-update``), up to ``--in-flight`` awaiting their ack; the others apply what the server
relays (``note-updated``). Most edits insert a unique token (``c07e042;``) between two tokens of
the shared "rationale" text, some into "dissent", some set a value, a few add a recommendation;
each token must be in the server's note exactly once. Every run has a fresh server on a copy of
one seeded demo; runs alternate between 1 and 15 writers. Prints a table, writes
``tests/bench/results/notes.json``; exits 1 only if an edit was lost or a replica differs from
the server (the goal is reported, not enforced: this machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import pycrdt
import socketio

from server.demo import DEMO_PASSWORD

from .bench_sync import NAMESPACE, RESULTS, ROOT, ServerProcess, call, eboard_server, percentile
from .machine import process_cpu, wait_quiet
from .report import ratio

GOAL_MS = 200.0
# The writers of the demo board "Thoracic MDT", taken in turn; the observer only reads.
WRITER_USERS = tuple(
    "chair radiologist pathologist surgeon oncologist coordinator external".split()
)
READER_USER = "observer"
# About 15 recommendations in 1500 edits (the template allows 20): the server checks the whole
# note's shape on every update, so a note far longer than a real one would distort the figures.
KINDS, WEIGHTS = ("rationale", "dissent", "value", "recommendation"), (70, 18, 11, 1)
TEXTS = ("rationale", "dissent", "recommendation")  # the kinds whose edits carry a token
INTENTS = ("373808002", "363676003", "399707004")
# The template's maxItems for recommendations: like the form, a writer adds none beyond it.
FEW_RECOMMENDATIONS = 20


@dataclass(eq=False)
class Writer:
    """One writer's connection and pycrdt replica of the note: what it sent, what was
    acknowledged, and when (this process's ``perf_counter_ns``)."""

    number: int
    client: socketio.AsyncClient
    case_id: int
    rng: random.Random
    sent_at: dict[str, int]  # every writer's updates in flight or done → when sent
    doc: pycrdt.Doc[Any] = field(default_factory=pycrdt.Doc)
    sent: list[tuple[str, Any]] = field(default_factory=list)  # (kind, token or value)
    acked: list[tuple[str, Any]] = field(default_factory=list)
    refused: list[Any] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    seen_ms: list[float] = field(default_factory=list)  # another's edit sent → applied here
    last_sent: int = 0
    last_acked: int = 0
    last_applied: int = 0

    @property
    def note(self) -> pycrdt.Map[Any]:
        return self.doc.get("note", type=pycrdt.Map)  # type: ignore[no-any-return]

    async def open(self) -> None:
        self.client.on("note-updated", self._updated, namespace=NAMESPACE)
        opened = await call(self.client, "note-open", {"case_id": self.case_id})
        if opened["readonly"]:
            raise RuntimeError(f"writer {self.number} may not write the note: {opened}")
        self.doc.apply_update(base64.b64decode(opened["update"]))

    def _updated(self, data: dict[str, Any]) -> None:
        if data["case_id"] == self.case_id:
            self.doc.apply_update(base64.b64decode(data["update"]))
            self.last_applied = time.perf_counter_ns()
            self.seen_ms.append((self.last_applied - self.sent_at[data["update"]]) / 1e6)

    async def run(self, edits: int, in_flight: int) -> None:
        """``edits`` edits, each sent as soon as fewer than ``in_flight`` await their ack."""
        slots = asyncio.Semaphore(in_flight)
        for n in range(edits):
            await slots.acquire()
            await self._send(n, slots.release)
        for _ in range(in_flight):
            await slots.acquire()

    async def _send(self, n: int, release: Callable[[], None]) -> None:
        before = self.doc.get_state()
        with self.doc.transaction():
            edit = self._change(f"c{self.number:02d}e{n:03d};")
        update = base64.b64encode(self.doc.get_update(before)).decode("ascii")
        self.sent.append(edit)
        sent = self.sent_at[update] = self.last_sent = time.perf_counter_ns()

        def acked(ack: Any) -> None:
            self.last_acked = time.perf_counter_ns()
            self.ack_ms.append((self.last_acked - sent) / 1e6)
            if isinstance(ack, dict) and ack.get("ok"):
                self.acked.append(edit)
            else:
                self.refused.append(ack)
            release()

        data = {"case_id": self.case_id, "update": update}
        await self.client.emit("note-update", data, namespace=NAMESPACE, callback=acked)

    def _text(self, kind: str, token: str) -> tuple[str, Any]:
        text = self.note[kind]
        # Between two tokens, never inside one, so that a torn token shows as lost.
        ends = [0] + [i + 1 for i, ch in enumerate(str(text)) if ch == ";"]
        text.insert(self.rng.choice(ends), token)
        return kind, token

    def _change(self, token: str) -> tuple[str, Any]:
        note, kind = self.note, self.rng.choices(KINDS, WEIGHTS)[0]
        if kind in ("rationale", "dissent"):
            return self._text(kind, token)
        if kind == "recommendation" and len(note["recommendations"]) >= FEW_RECOMMENDATIONS:
            kind = "rationale"  # as the form would: its "add" stops at the template's limit
            return self._text(kind, token)
        if kind == "recommendation":
            item = {"type": "surgery", "detail": pycrdt.Text(token), "nct_number": pycrdt.Text()}
            note["recommendations"].append(pycrdt.Map(item))
            return kind, token
        if self.rng.random() < 0.5:
            note["intent"] = value = self.rng.choice(INTENTS)
            return "intent", value
        note["ecog"] = number = self.rng.randrange(6)
        return "ecog", number


# One run: a fresh server, its writers and reader, the edits, the wait for convergence.


async def log_in(url: str) -> tuple[int, dict[str, str]]:
    """The demo's ready case, and a token for every writer and the reader."""
    async with aiohttp.ClientSession(base_url=url) as http:
        tokens: dict[str, str] = {}
        for name in (*WRITER_USERS, READER_USER):
            body = {"username": name, "password": DEMO_PASSWORD}
            async with http.post("/api/login", json=body) as resp:
                tokens[name] = str((await resp.json())["token"])
        headers = {"Authorization": f"Bearer {tokens['coordinator']}"}
        async with http.get("/api/cases", headers=headers) as resp:
            cases = (await resp.json())["items"]
    return next(int(c["id"]) for c in cases if c["state"] == "ready"), tokens


async def connect(url: str, token: str) -> socketio.AsyncClient:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        url, auth={"token": token}, namespaces=[NAMESPACE], transports=["websocket"]
    )
    return client


async def one_run(
    server: ServerProcess, clients: int, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    case_id, tokens = await log_in(server.url)
    reader = await connect(server.url, tokens[READER_USER])
    writers: list[Writer] = []
    sent_at: dict[str, int] = {}
    try:
        for n in range(clients):
            client = await connect(server.url, tokens[WRITER_USERS[n % len(WRITER_USERS)]])
            writers.append(Writer(n + 1, client, case_id, random.Random(seed * 100 + n), sent_at))
            await writers[-1].open()
        others = await wait_quiet(args.quiet_wait)
        gc.collect()
        gc.disable()  # a full collection of the clients' heap would stall every replica at once
        try:
            return await edit_all(server, writers, reader, args) | {"others_cpu_pct": others}
        finally:
            gc.enable()
    finally:
        for client in (reader, *(w.client for w in writers)):
            await client.disconnect()


async def edit_all(
    server: ServerProcess, writers: list[Writer], reader: socketio.AsyncClient, args: Any
) -> dict[str, Any]:
    """Every writer's edits at once; then the server's note, and the wait for every replica."""
    cpu0, me0, t0 = process_cpu(server.pid), process_cpu(os.getpid()), time.perf_counter_ns()
    edits = (w.run(args.edits, args.in_flight) for w in writers)
    await asyncio.wait_for(asyncio.gather(*edits), 300)
    # Every edit is acknowledged, so the server's note is final: one note-open reads it.
    opened = await call(reader, "note-open", {"case_id": writers[0].case_id})
    mirror: pycrdt.Doc[Any] = pycrdt.Doc()
    mirror.apply_update(base64.b64decode(opened["update"]))
    final = mirror.get("note", type=pycrdt.Map).to_py()
    converged = await converge(writers, final, args.timeout)
    cpu1, me1, t1 = process_cpu(server.pid), process_cpu(os.getpid()), time.perf_counter_ns()
    await asyncio.sleep(0.2)  # a late duplicate relay would show in relays_unexpected
    seconds = (t1 - t0) / 1e9
    return figures(writers, final, converged) | {
        "wall_s": round(seconds, 2),
        "server_cpu_ms_per_edit": round((cpu1 - cpu0) * 1e3 / (len(writers) * args.edits), 2),
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / seconds, 1),
        "runner_cpu_pct": round(100 * (me1 - me0) / seconds, 1),
    }


async def converge(writers: list[Writer], final: dict[str, Any], seconds: float) -> bool:
    """Wait until every replica holds the server's note (compared once it has had every relay
    it is owed, so that a poll costs little); False after ``seconds``."""
    acked = sum(len(w.acked) for w in writers)
    waiting = set(writers)
    deadline = time.monotonic() + seconds
    while waiting and time.monotonic() < deadline:
        for w in list(waiting):
            if len(w.seen_ms) + len(w.acked) >= acked and w.note.to_py() == final:
                waiting.discard(w)
        await asyncio.sleep(0.001)
    return not waiting


def figures(writers: list[Writer], final: dict[str, Any], converged: bool) -> dict[str, Any]:
    """One run's row. The replicas converged when the last of them applied the relay that made
    it whole: after that none receives anything (``relays_unexpected``)."""
    ack_ms = sorted(ms for w in writers for ms in w.ack_ms)
    seen_ms = sorted(ms for w in writers for ms in w.seen_ms)
    last_sent, last_acked = max(w.last_sent for w in writers), max(w.last_acked for w in writers)
    done = max([last_acked, *(w.last_applied for w in writers)])
    acked = sum(len(w.acked) for w in writers)
    lost, duplicated = losses(writers, final)
    after_sent = round((done - last_sent) / 1e6, 1) if converged else None
    return {
        "clients": len(writers),
        "edits_sent": sum(len(w.sent) for w in writers),
        "edits_acked": acked,
        "refused": [ack for w in writers for ack in w.refused][:5],
        "ack_p50_ms": percentile(ack_ms, 50),
        "ack_p95_ms": percentile(ack_ms, 95),
        "ack_max_ms": round(ack_ms[-1], 1),
        "seen_p50_ms": percentile(seen_ms, 50),
        "seen_p95_ms": percentile(seen_ms, 95),
        "converged": converged,
        "converged_after_last_sent_ms": after_sent,
        "converged_after_last_ack_ms": round((done - last_acked) / 1e6, 1) if converged else None,
        "goal_met": after_sent is not None and after_sent <= GOAL_MS,
        "differing_replicas": [w.number for w in writers if w.note.to_py() != final],
        "relays_unexpected": sum(len(w.seen_ms) - (acked - len(w.acked)) for w in writers),
        "lost": lost[:20],
        "lost_count": len(lost),
        "duplicated": duplicated[:20],
        "rationale_chars": len(final["rationale"]),
        "recommendations": len(final["recommendations"]),
    }


def losses(writers: list[Writer], final: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Edits the server's note does not show, and tokens or characters it shows too often."""
    held = {k: final[k] for k in ("rationale", "dissent")}
    held["recommendation"] = "".join(r["detail"] for r in final["recommendations"])
    sent = [edit for w in writers for edit in w.sent]
    lost = [(k, t) for k, t in sent if k in held and t not in held[k]]
    duplicated = [(k, t) for k, t in sent if k in held and held[k].count(t) > 1]
    for kind in TEXTS:  # nothing but whole tokens, each once
        size = sum(len(t) for k, t in sent if k == kind)
        if len(held[kind]) != size:
            duplicated.append((kind, f"{len(held[kind])} characters for {size} sent"))
    for kind in ("intent", "ecog"):  # the last writer's value wins, whoever that was
        values = [v for k, v in sent if k == kind]
        if values and final.get(kind) not in values:
            lost.append((kind, final.get(kind)))
    return lost, duplicated


# The whole benchmark.

COLUMNS = (  # heading, key, format
    ("writers", "clients", "d"),
    ("acked", "edits_acked", "d"),
    ("ack p50", "ack_p50_ms", ".1f"),
    ("ack p95", "ack_p95_ms", ".1f"),
    ("seen p50", "seen_p50_ms", ".1f"),
    ("seen p95", "seen_p95_ms", ".1f"),
    ("conv−sent", "converged_after_last_sent_ms", ".1f"),
    ("conv−ack", "converged_after_last_ack_ms", ".1f"),
    ("lost", "lost_count", "d"),
    ("srv ms/edit", "server_cpu_ms_per_edit", ".2f"),
    ("srv CPU%", "server_cpu_pct", ".0f"),
    ("runner CPU%", "runner_cpu_pct", ".0f"),
    ("others%", "others_cpu_pct", ".0f"),
)


def row(run: dict[str, Any] | None) -> str:
    """The table's heading (``run`` None) or one run's line."""
    cells = [
        h if run is None else format(run[k], f) if run[k] is not None else "–"
        for h, k, f in COLUMNS
    ]
    return "  ".join(f"{c:>{max(7, len(h))}}" for c, (h, _, _) in zip(cells, COLUMNS, strict=True))


def summary(runs: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    def median(key: str, n: int) -> float | None:
        values = [r[key] for r in runs if r["clients"] == n and r[key] is not None]
        return round(statistics.median(values), 1) if values else None

    out: dict[str, Any] = {}
    for key in ("ack_p50_ms", "ack_p95_ms", "server_cpu_ms_per_edit"):
        one, many = median(key, 1), median(key, clients)
        out[key] = {"1": one, str(clients): many, "ratio": ratio(many, one)}
    crowd = [r for r in runs if r["clients"] == clients]
    for key in ("converged_after_last_sent_ms", "converged_after_last_ack_ms", "seen_p95_ms"):
        worst = None if any(r[key] is None for r in crowd) else max(r[key] for r in crowd)
        out[key] = {"median": median(key, clients), "worst": worst}
    out["goal"] = f"converged ≤ {GOAL_MS:.0f} ms after the last edit was sent"
    out["goal_met_runs"] = f"{sum(r['goal_met'] for r in crowd)}/{len(crowd)}"
    out["nothing_lost"] = all(not r["lost_count"] and not r["duplicated"] for r in runs)
    out["identical"] = all(r["converged"] and not r["differing_replicas"] for r in runs)
    return out


def measured(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    seeded = work / "seed"
    command = ["server", "demo", "--data-dir", str(seeded), "--demo-ct", "0", "--seed-only"]
    with (work / "seed.log").open("wb") as out:
        subprocess.run(
            [sys.executable, "-m", *command], check=True, cwd=ROOT, stdout=out, stderr=out
        )
    runs = []
    for r in range(args.repeat):
        for clients in (1, args.clients):
            folder = work / f"run{r + 1}-{clients}"
            shutil.copytree(seeded, folder / "data")
            server = eboard_server(folder / "data", folder, "0")
            server.start()
            try:
                run = {"run": r + 1} | asyncio.run(one_run(server, clients, args, seed=r))
            finally:
                server.stop()
            log = server.log.read_text(errors="replace").splitlines()
            run["server_log_problems"] = [x for x in log if "ERROR" in x or "Traceback" in x]
            runs.append(run)
            print(row(run), flush=True)
    return runs


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: one run each")
    parser.add_argument("--repeat", type=int, default=3, help="runs per writer count")
    parser.add_argument("--clients", type=int, default=15, help="writers at once")
    parser.add_argument("--edits", type=int, default=100, help="edits per writer")
    parser.add_argument("--in-flight", type=int, default=4, help="unacknowledged per writer")
    parser.add_argument("--timeout", type=float, default=10.0, help="convergence, seconds")
    parser.add_argument("--quiet-wait", type=float, default=10.0, help="for others, seconds")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument("--output", type=Path, default=RESULTS / "notes.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 1
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-notes-"))
    print(f"{args.clients} writers × {args.edits} edits to one note, and 1 writer alone; ms")
    print(row(None))
    try:
        runs = measured(args, work)
    except BaseException:
        print(f"logs kept in {work}", file=sys.stderr)
        raise
    if not args.keep_logs:
        shutil.rmtree(work, ignore_errors=True)
    s = summary(runs, args.clients)
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "python_socketio": metadata.version("python-socketio"),
            "pycrdt": metadata.version("pycrdt"),
        },
        "config": vars(args) | {"mix_pct": dict(zip(KINDS, WEIGHTS, strict=True))},
        "runs": runs,
        "summary": s,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\nmedians        1 writer  " + f"{args.clients} writers  ratio")
    for key in ("ack_p50_ms", "ack_p95_ms", "server_cpu_ms_per_edit"):
        one, many, times = s[key]["1"], s[key][str(args.clients)], s[key]["ratio"]
        print(f"{key:<24} {one:>8} {many:>10} {times:>6}")
    conv = s["converged_after_last_sent_ms"]
    print(
        f"{s['goal']}: median {conv['median']} ms, worst {conv['worst']} ms "
        f"→ met in {s['goal_met_runs']} runs"
    )
    print(f"nothing lost: {s['nothing_lost']}; every replica identical: {s['identical']}")
    print(f"written to {args.output}" + (f" (logs in {work})" if work.exists() else ""))
    return 0 if s["nothing_lost"] and s["identical"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
