"""The machine the benchmark runs on: its private network namespace, and CPU accounting from
/proc (this machine may be shared, so what other programs use is measured too)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = [
    "LOAD_ADDRESS",
    "SERVER_ADDRESS",
    "VETH",
    "background_load",
    "child_pid",
    "enter_namespace",
    "machine_cpu",
    "process_cpu",
    "process_times",
    "set_up_namespace",
    "wait_quiet",
]

VETH = ("ebv0", "ebv1")  # ebv0 carries the servers' address, ebv1 the load generator's
SERVER_ADDRESS, LOAD_ADDRESS = "198.18.0.1", "198.18.0.2"  # RFC 2544's benchmarking range
CLK_TCK = os.sysconf("SC_CLK_TCK")


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
