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
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from media.local import LocalSfu
from media.sfu import MediaError
from media.worker import WorkerSfu

from .clip import encode_clip
from .janus import JanusServer
from .machine import (
    LOAD_ADDRESS,
    background_load,
    enter_namespace,
    machine_cpu,
    process_cpu,
    process_times,
    set_up_namespace,
    wait_quiet,
)
from .report import SATURATED, isolation_table, median_cell, notes, profile_summary, ratio, table
from .targets import ROOM, DownOfferRelay, JanusTarget, SfuTarget, Target
from .transcode import TranscodeWorkerSfu

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "bench" / "results"


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
        if not target.passes_payload:
            command.append("--no-latency")
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
        relay.send = generator.send
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
        relay.send = None
        await target.stop()
    print(f" {time.monotonic() - started:.0f} s", file=options.progress)
    return result


# The run.


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
            "eboard_cpu_per_stream / janus_cpu_per_stream": ratio(
                per_stream.get("eboard"), per_stream.get("janus")
            ),
            "transcode_cpu_per_stream / eboard_cpu_per_stream": ratio(
                per_stream.get("transcode"), per_stream.get("eboard")
            ),
            "transcode_cpu_per_video_frame / eboard_cpu_per_video_frame": ratio(
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
