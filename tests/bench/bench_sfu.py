"""The SFU benchmark: the same board load, in one run on one machine, through eBoard's SFU (in its
worker process), Janus 1.1.2's VideoRoom and aiortc's transcoding relay; then media isolation
(frame intervals at the subscribers while the server process is busy).

    python -m tests.bench.bench_sfu [--quick] [--sizes 2,4,8,12] [--window 10] ...

Everything runs in a private network namespace (the runner re-executes itself under
``unshare --net``): Janus's libnice gathers no loopback candidates, so a veth pair is created
there and every peer gathers on it. Prints a table and writes ``tests/bench/results/sfu.json``.
See tests/bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from media.events import DownOffer, MediaEvent
from media.local import LocalSfu
from media.sfu import MediaError, Sfu
from media.worker import WorkerSfu

from .clip import MAX_PUBLISHERS, encode_clip
from .janus import JanusServer
from .transcode import TranscodeWorkerSfu

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "bench" / "results"
VETH = ("ebv0", "ebv1")  # ebv0 carries the servers' address, ebv1 the load generator's
SERVER_ADDRESS, LOAD_ADDRESS = "198.18.0.1", "198.18.0.2"  # RFC 2544's benchmarking range
ROOM = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SATURATED = 90.0  # % of all cores busy


# The network namespace.


def enter_namespace(argv: list[str]) -> None:
    """Re-execute this runner inside a fresh network namespace (needs root)."""
    os.execvp(
        "unshare",
        [
            "unshare",
            "--net",
            "--",
            sys.executable,
            "-m",
            "tests.bench.bench_sfu",
            "--in-namespace",
            *argv,
        ],
    )


def set_up_namespace() -> None:
    """Loopback plus a veth pair with one address per end; no route leaves the namespace."""
    a, b = VETH
    for command in (
        "ip link set lo up",
        f"ip link add {a} type veth peer name {b}",
        f"ip addr add {SERVER_ADDRESS}/30 dev {a}",
        f"ip addr add {LOAD_ADDRESS}/30 dev {b}",
        f"ip link set {a} up",
        f"ip link set {b} up",
    ):
        subprocess.run(command.split(), check=True)
    for key in ("all", "default", a, b):  # this namespace's own settings
        conf = Path("/proc/sys/net/ipv4/conf") / key
        (conf / "accept_local").write_text("1")
        (conf / "rp_filter").write_text("0")


# CPU accounting from /proc.


def process_cpu(pid: int) -> float:
    """Seconds of CPU (user + system, all threads) ``pid`` has used."""
    return sum(process_times(pid))


def process_times(pid: int) -> tuple[float, float]:
    """(user, system) seconds of CPU ``pid`` has used, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def child_pid(module: str) -> int:
    """The pid of this process's child running ``python -m module``."""
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if module.encode() in cmdline:
                return int(pid)
    raise LookupError(f"no child process runs {module}")


# Targets: what serves the board, and which process to charge for it.


class Target(Protocol):
    name: str
    sfu: Sfu | None  # signalled through the runner, or None: the generator talks to it itself
    janus_url: str | None

    async def start(self) -> None: ...

    def pid(self) -> int: ...

    async def stats(self) -> dict[str, Any]: ...

    async def stop(self) -> None: ...


class SfuTarget:
    """An ``Sfu`` owned by the runner, which plays the server process."""

    janus_url: str | None = None

    def __init__(
        self,
        name: str,
        kind: type[WorkerSfu] | type[LocalSfu],
        module: str | None,
        relay: DownOfferRelay,
    ) -> None:
        self.name = name
        self._kind = kind
        self._module = module  # the worker process, or None: in the runner itself
        self._relay = relay
        self.sfu: Sfu | None = None

    async def start(self) -> None:
        # Last-N off: everyone receives everyone's video, as Janus's full mesh does.
        self.sfu = self._kind(self._relay, [], last_n=MAX_PUBLISHERS)

    def pid(self) -> int:
        return child_pid(self._module) if self._module else os.getpid()

    async def stats(self) -> dict[str, Any]:
        assert self.sfu is not None
        stats = await self.sfu.stats(ROOM)
        return {"packets_forwarded": stats.packets_forwarded, **stats.extra}

    async def stop(self) -> None:
        if self.sfu is not None:
            await self.sfu.close()
            self.sfu = None


class JanusTarget:
    sfu: Sfu | None = None

    def __init__(self, event_loops: int) -> None:
        self.name = "janus"
        self._server = JanusServer(VETH[0], event_loops=event_loops)
        self.janus_url: str | None = self._server.url

    async def start(self) -> None:
        self._server.start()
        await self._server.wait_ready()

    def pid(self) -> int:
        return self._server.pid

    async def stats(self) -> dict[str, Any]:
        return {}

    async def stop(self) -> None:
        self._server.stop()


class DownOfferRelay:
    """The runner's event sink: hands the SFU's down offers to the current load generator."""

    def __init__(self) -> None:
        self.generator: Generator | None = None

    def __call__(self, event: MediaEvent) -> None:
        if isinstance(event, DownOffer) and self.generator is not None:
            self.generator.send(
                {"event": "DownOffer", "participant": event.participant, "sdp": event.sdp}
            )


# The load generator process.


class GeneratorFailed(Exception):
    pass


class Generator:
    """A ``sfu_load`` process: relays its signalling calls to the target, collects its reports."""

    def __init__(self, process: asyncio.subprocess.Process, target: Target, log: Path) -> None:
        self.process = process
        self._target = target
        self.log = log
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, target: Target, size: int, clip: Path, log: Path) -> Generator:
        command = [
            sys.executable,
            "-m",
            "tests.bench.sfu_load",
            "--participants",
            str(size),
            "--clip",
            str(clip),
            "--address",
            LOAD_ADDRESS,
        ]
        if target.janus_url:
            command += ["--janus", target.janus_url]
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("wb"),
            limit=8 * 1024 * 1024,
        )
        return cls(process, target, log)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            if "call" in message:
                task = asyncio.ensure_future(self._call(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._messages.put_nowait(message)
        self._messages.put_nowait({"failed": f"the load generator exited: {self.tail()}"})

    async def _call(self, message: dict[str, Any]) -> None:
        sfu = self._target.sfu
        assert sfu is not None
        try:
            result = await getattr(sfu, message["op"])(ROOM, **message["args"])
            self.send({"reply": message["call"], "ok": result})
        except MediaError as exc:
            self.send({"reply": message["call"], "error": str(exc)})

    async def expect(self, key: str, seconds: float) -> Any:
        async with asyncio.timeout(seconds):
            while True:
                message = await self._messages.get()
                if key in message:
                    return message[key]
                if "failed" in message:
                    raise GeneratorFailed(message["failed"])

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
        self._reader.cancel()


# Measuring.


@dataclass
class Options:
    warmup: float
    window: float
    setup_timeout: float
    clip: Path
    logs: Path
    relay: DownOfferRelay
    progress: TextIO  # the terminal; stderr itself goes to a log for the servers' chatter
    profile: str | None = None  # py-spy, sampling the eBoard SFU during each window
    quiet_wait: float = 0.0  # seconds to wait, before each cell, for other programs to calm


async def burn(seconds: float) -> None:
    """A CPU-heavy request on this event loop: hashing in half-second blocking slices."""
    block = os.urandom(1 << 16)
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        stop = min(end, now + 0.5)
        while time.monotonic() < stop:
            hashlib.sha256(block).digest()
        await asyncio.sleep(0)


async def measure(
    target: Target, generator: Generator, options: Options, busy: bool = False
) -> dict[str, Any]:
    window = options.window
    sfu_pid, generator_pid, runner_pid = target.pid(), generator.process.pid, os.getpid()
    before = await target.stats()
    generator.send({"cmd": "window_start"})
    await generator.expect("window_started", 10)
    profiler = None
    if options.profile and target.name == "eboard":
        out = options.logs / f"profile-{target.name}-{generator.log.stem}.txt"
        profiler = await asyncio.create_subprocess_exec(
            options.profile,
            "record",
            "--nonblocking",
            "--function",
            "--format",
            "raw",
            "--rate",
            "250",
            "--duration",
            str(int(window)),
            "--pid",
            str(sfu_pid),
            "--output",
            str(out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    started = time.monotonic()
    times0, gen0, machine0 = process_times(sfu_pid), process_cpu(generator_pid), machine_cpu()
    run0 = process_cpu(runner_pid)
    if busy:
        await burn(window)
    else:
        await asyncio.sleep(window)
    times1, gen1, machine1 = process_times(sfu_pid), process_cpu(generator_pid), machine_cpu()
    run1 = process_cpu(runner_pid)
    seconds = time.monotonic() - started
    generator.send({"cmd": "window_end"})
    stats = await generator.expect("window", 10)
    after = await target.stats()
    size = stats["participants"]
    streams = size * (size - 1)
    cpu = sum(times1) - sum(times0)
    frames = stats["fps_mean"] * stats["down_tracks_video"] * stats["seconds"]
    system = times1[1] - times0[1]
    packets = stats["packets_received"]
    busy_share = 100 * (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1])
    ours = cpu + (gen1 - gen0) + (0 if sfu_pid == runner_pid else run1 - run0)
    others = busy_share * (os.cpu_count() or 1) - 100 * ours / seconds
    result = {
        "participants": size,
        "streams": streams,
        "sfu_cpu_pct": round(100 * cpu / seconds, 1),
        "sfu_system_cpu_pct": round(100 * system / seconds, 1),  # of which in the kernel
        "cpu_us_per_packet": round(1e6 * cpu / packets, 2) if packets else None,
        "cpu_us_per_stream": round(1e6 * cpu / seconds / streams, 1),
        # per video frame delivered (with the audio around it): fair to a relay too slow for
        # 30 fps, whose per-stream figure is then a lower bound
        "cpu_us_per_video_frame": round(1e6 * cpu / frames, 1) if frames else None,
        "packets_forwarded_per_s": stats["packets_received_per_s"],
        **{k: v for k, v in stats.items() if k not in ("participants", "packets_received_per_s")},
        "generator_cpu_pct": round(100 * (gen1 - gen0) / seconds, 1),
        "machine_busy_pct": round(busy_share, 1),
        "saturated": busy_share >= SATURATED,
        # CPU the benchmark did not account for (other programs on the machine), in % of a core
        "others_cpu_pct": round(max(0.0, others), 1),
    }
    if profiler is not None:
        await profiler.wait()
        result["profile_top"] = profile_summary(
            options.logs / f"profile-{target.name}-{generator.log.stem}.txt"
        )
    if before and after:
        result["sfu_reported"] = {k: after[k] - before[k] for k in after if k in before}
    return result


async def run_cell(
    target: Target, size: int, options: Options, isolation: bool = False
) -> dict[str, Any]:
    """One target at one size: set up, warm up, measure (twice, quiet then busy, for the
    isolation check)."""
    relay = options.relay
    log = options.logs / f"{target.name}-{size}{'-isolation' if isolation else ''}.log"
    print(f"  {target.name} × {size} …", end="", flush=True, file=options.progress)
    started = time.monotonic()
    background = await wait_quiet(options.quiet_wait)
    generator: Generator | None = None
    try:
        await target.start()
        generator = await Generator.start(target, size, options.clip, log)
        relay.generator = generator
        ready = await generator.expect("ready", options.setup_timeout)
        await asyncio.sleep(options.warmup)
        if isolation:
            result: dict[str, Any] = {
                "quiet": await measure(target, generator, options),
                "busy": await measure(target, generator, options, busy=True),
            }
        else:
            result = await measure(target, generator, options)
        result["setup"] = ready
        result["others_cpu_pct_before"] = background
    except (GeneratorFailed, TimeoutError, OSError, LookupError) as exc:
        detail = generator.tail() if generator is not None else ""
        result = {"error": f"{type(exc).__name__}: {exc}", "log_tail": detail}
    finally:
        if generator is not None:
            await generator.stop()
        relay.generator = None
        await target.stop()
    print(f" {time.monotonic() - started:.0f} s", file=options.progress)
    return result


# Reporting.


def median_cell(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Repeated runs of one cell → one: each number the median of the runs that worked; the
    per-stream CPU of every run kept beside it."""
    good = [c for c in cells if "error" not in c]
    if len(good) <= 1:
        return good[0] if good else cells[0]
    merged = dict(good[0])
    for key, value in good[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [c[key] for c in good if isinstance(c.get(key), int | float)]
            if all(isinstance(v, int) for v in values):
                merged[key] = statistics.median_low(values)
            else:
                merged[key] = round(statistics.median(values), 2)
    merged["saturated"] = any(c["saturated"] for c in good)
    merged["runs"] = len(good)
    merged["cpu_us_per_stream_runs"] = [c["cpu_us_per_stream"] for c in good]
    return merged


def profile_summary(path: Path, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """py-spy's collapsed stacks → the functions with the most self and inclusive time, in %
    of the samples."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n

    def rank(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [(frame, round(100 * n / total, 1)) for frame, n in ranked]

    return {"self": rank(own), "inclusive": rank(inclusive)}


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 2)
    return None


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else ""
    return format(value, spec)


def _pair(cell: dict[str, Any], a: str, b: str) -> str:
    return f"{_fmt(cell[a], '.1f')}/{_fmt(cell[b], '.1f')}"


# (heading, width, cell → text) for each column of the main table.
_COLUMNS: list[tuple[str, int, Callable[[dict[str, Any]], str]]] = [
    ("streams", 7, lambda c: str(c["streams"])),
    ("SFU CPU%", 8, lambda c: _fmt(c["sfu_cpu_pct"], ".1f")),
    ("µs/pkt", 7, lambda c: _fmt(c["cpu_us_per_packet"], ".1f")),
    ("µs/stream·s", 11, lambda c: _fmt(c["cpu_us_per_stream"], ".0f")),
    ("pkts/s", 7, lambda c: _fmt(c["packets_forwarded_per_s"], ".0f")),
    ("fps mean/min", 12, lambda c: _pair(c, "fps_mean", "fps_min")),
    ("frozen", 6, lambda c: str(c["frozen_streams"])),
    ("lat p50/p99 ms", 14, lambda c: _pair(c, "latency_p50_ms", "latency_p99_ms")),
    ("KF req", 6, lambda c: str(c["keyframe_requests"])),
    ("gen CPU%", 8, lambda c: _fmt(c["generator_cpu_pct"], ".1f")),
    ("other CPU%", 10, lambda c: _fmt(c["others_cpu_pct"], ".0f")),
    ("machine%", 8, lambda c: _fmt(c["machine_busy_pct"], ".0f")),
    ("sat", 3, lambda c: _fmt(c["saturated"])),
]


def table(sizes: dict[str, dict[str, Any]]) -> str:
    head = f"{'N':>3} {'target':<10} " + " ".join(f"{h:>{w}}" for h, w, _ in _COLUMNS)
    lines = [head, "-" * len(head)]
    for size, row in sizes.items():
        for name in ("eboard", "janus", "transcode"):
            cell = row.get(name)
            if cell is None:
                continue
            if "error" in cell:
                lines.append(f"{size:>3} {name:<10} failed: {cell['error'][:100]}")
                continue
            values = " ".join(f"{show(cell):>{w}}" for _, w, show in _COLUMNS)
            lines.append(f"{size:>3} {name:<10} {values}")
        ratios = row.get("ratios", {})
        if any(v is not None for v in ratios.values()):
            lines.append("    " + "   ".join(f"{k} = {_fmt(v)}" for k, v in ratios.items()))
    return "\n".join(lines)


def isolation_table(isolation: dict[str, Any]) -> str:
    lines = [
        f"{'SFU':<22} {'server loop':<12} {'interval p50/p99/max ms':>24} "
        f"{'fps min':>7} {'frozen':>6}"
    ]
    for name, cell in isolation.items():
        if "error" in cell:
            lines.append(f"{name:<22} failed: {cell['error'][:100]}")
            continue
        for state in ("quiet", "busy"):
            w = cell[state]
            lines.append(
                f"{name:<22} {state:<12} "
                f"{_fmt(w['frame_interval_p50_ms'], '.1f'):>8}/"
                f"{_fmt(w['frame_interval_p99_ms'], '.1f')}/"
                f"{_fmt(w['frame_interval_max_ms'], '.0f'):<8} "
                f"{_fmt(w['fps_min'], '.1f'):>7} {w['frozen_streams']:>6}"
            )
    return "\n".join(lines)


def notes(sizes: dict[str, dict[str, Any]]) -> list[str]:
    found = []
    for size, row in sizes.items():
        for name, cell in row.items():
            if name == "ratios" or "error" in cell:
                continue
            if cell["saturated"]:
                found.append(
                    f"{name} × {size}: the machine was saturated "
                    f"({cell['machine_busy_pct']:.0f} % of both cores busy): its figures "
                    "measure the machine's limit, not the SFU's alone."
                )
            if cell["fps_mean"] < 29:
                found.append(
                    f"{name} × {size}: delivered {cell['fps_mean']:.1f} fps of 30, so its CPU "
                    "per stream is a lower bound; compare cpu_us_per_video_frame."
                )
            if cell["frozen_streams"]:
                found.append(
                    f"{name} × {size}: {cell['frozen_streams']} of "
                    f"{cell['down_tracks_video']} video down-tracks froze (> 500 ms)."
                )
    return found


# The run.


async def background_load(seconds: float = 1.0) -> float:
    """% of a core other programs keep busy while this benchmark does nothing."""
    busy0, total0 = machine_cpu()
    await asyncio.sleep(seconds)
    busy1, total1 = machine_cpu()
    share = (busy1 - busy0) / max(1, total1 - total0)
    return round(100 * share * (os.cpu_count() or 1), 1)


async def wait_quiet(seconds: float, threshold: float = 15.0) -> float:
    """Wait up to ``seconds`` for other programs to use less than ``threshold`` % of a core
    (this machine may be shared); return what they used last."""
    deadline = time.monotonic() + seconds
    while (load := await background_load()) >= threshold and time.monotonic() < deadline:
        pass
    return load


async def run(args: argparse.Namespace, logs: Path, progress: TextIO) -> dict[str, Any]:
    background = await background_load()
    if background > 15:
        print(
            f"warning: other programs keep {background:.0f} % of a core busy; figures will be "
            "noisy (see each cell's others_cpu_pct)",
            file=progress,
        )
    print(f"encoding the clip once (logs in {logs}) …", file=progress)
    clip = encode_clip()
    clip_path = logs / "clip.pickle"
    clip.save(clip_path)
    relay = DownOfferRelay()
    profiler = (
        shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if args.profile
        else None
    )
    options = Options(
        args.warmup,
        args.window,
        args.setup_timeout,
        clip_path,
        logs,
        relay,
        progress,
        profiler,
        args.quiet_wait,
    )
    janus_missing = JanusServer.available() if "janus" in args.targets else None

    def target(name: str) -> Target:
        if name == "eboard":
            return SfuTarget("eboard", WorkerSfu, "media.worker", relay)
        if name == "transcode":
            return SfuTarget("transcode", TranscodeWorkerSfu, "tests.bench.transcode", relay)
        if name == "local":
            return SfuTarget("local", LocalSfu, None, relay)
        return JanusTarget(args.janus_event_loops)

    sizes: dict[str, dict[str, Any]] = {}
    for size in args.sizes:
        print(f"{size} participants", file=progress)
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeat):  # interleaved, so drift hits every target alike
            for name in args.targets:
                if name == "transcode" and size not in args.transcode_sizes:
                    continue
                if name == "janus" and janus_missing:
                    runs[name] = [{"error": janus_missing}]
                    continue
                runs.setdefault(name, []).append(await run_cell(target(name), size, options))
        row: dict[str, Any] = {name: median_cell(cells) for name, cells in runs.items()}
        per_stream = {k: v.get("cpu_us_per_stream") for k, v in row.items()}
        per_frame = {k: v.get("cpu_us_per_video_frame") for k, v in row.items()}
        row["ratios"] = {
            "eboard_cpu_per_stream / janus_cpu_per_stream": _ratio(
                per_stream.get("eboard"), per_stream.get("janus")
            ),
            "transcode_cpu_per_stream / eboard_cpu_per_stream": _ratio(
                per_stream.get("transcode"), per_stream.get("eboard")
            ),
            "transcode_cpu_per_video_frame / eboard_cpu_per_video_frame": _ratio(
                per_frame.get("transcode"), per_frame.get("eboard")
            ),
        }
        sizes[str(size)] = row

    isolation: dict[str, Any] = {}
    if args.isolation_size:
        print(f"isolation, {args.isolation_size} participants", file=progress)
        isolation["eboard (worker process)"] = await run_cell(
            target("eboard"), args.isolation_size, options, isolation=True
        )
        if args.isolation_contrast:
            isolation["LocalSfu (in-process)"] = await run_cell(
                target("local"), args.isolation_size, options, isolation=True
            )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "others_cpu_pct_at_start": background,
        },
        "config": {
            "sizes": args.sizes,
            "targets": args.targets,
            "warmup_s": args.warmup,
            "window_s": args.window,
            "repeat": args.repeat,
            "transcode_sizes": args.transcode_sizes,
            "janus_event_loops": args.janus_event_loops,
            "video": f"VP8 {clip.width}x{clip.height} 30 fps, "
            f"{clip.video_kbps:.0f} kbit/s, "
            f"{clip.video_packets_per_second:.0f} packets/s; "
            "Opus 50 packets/s",
            "stream": "one publisher's video + audio to one subscriber",
            "cpu_us_per_stream": "µs of SFU CPU per second per stream",
        },
        "sizes": sizes,
        "isolation": isolation,
        "notes": notes(sizes),
    }


def parse(argv: list[str]) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",") if v]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="sizes 2 and 4, eBoard and transcoding only, short windows",
    )
    parser.add_argument("--sizes", type=ints, default=[2, 4, 8, 12])
    parser.add_argument(
        "--targets", type=lambda t: t.split(","), default=["eboard", "janus", "transcode"]
    )
    parser.add_argument(
        "--transcode-sizes",
        type=ints,
        default=[2, 4],
        help="the relay saturates this machine beyond these",
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--setup-timeout", type=float, default=90.0)
    parser.add_argument("--isolation-size", type=int, default=4, help="0: skip")
    parser.add_argument(
        "--no-isolation-contrast",
        dest="isolation_contrast",
        action="store_false",
        help="skip the in-process LocalSfu run of the isolation check",
    )
    parser.add_argument(
        "--janus-event-loops",
        type=int,
        default=0,
        help="Janus's event_loops (0: its default, a thread per handle)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per cell, interleaved; medians are reported"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each cell, wait up to this many seconds for other programs to go quiet",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample eBoard's SFU with py-spy (if installed) in each window",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "sfu.json")
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.targets, args.transcode_sizes = [2, 4], ["eboard", "transcode"], [2, 4]
        args.window, args.warmup, args.isolation_size = 5.0, 2.0, 0
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    if not args.in_namespace:
        if os.geteuid() != 0:
            sys.exit("bench_sfu needs root: it makes a network namespace with a veth pair")
        enter_namespace(argv)
    os.chdir(ROOT)
    set_up_namespace()
    logs = Path(tempfile.mkdtemp(prefix="bench-sfu-"))
    # Children inherit stderr: the SFU worker and Janus log there. Keep the terminal for
    # progress and the table.
    progress = os.fdopen(os.dup(2), "w", buffering=1)
    with (logs / "stderr.log").open("wb") as log:
        os.dup2(log.fileno(), 2)
    report = asyncio.run(run(args, logs, progress))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(
        f"SFU benchmark — {report['config']['video']}; a stream is "
        f"{report['config']['stream']}; {args.window:.0f} s per cell"
    )
    print(table(report["sizes"]))
    if report["isolation"]:
        print()
        print(
            f"Media isolation ({args.isolation_size} participants; frame intervals at the "
            "subscribers, server event loop quiet vs. busy hashing in 0.5 s slices)"
        )
        print(isolation_table(report["isolation"]))
    for note in report["notes"]:
        print("note:", note)
    print(f"\nwritten {args.output}")


if __name__ == "__main__":
    main(sys.argv[1:])
