"""Report: the benchmark's table, notes, medians of repeated runs and profile summaries."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "SATURATED",
    "isolation_table",
    "median_cell",
    "notes",
    "profile_summary",
    "ratio",
    "table",
]

SATURATED = 90.0  # % of all cores busy


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


def ratio(a: Any, b: Any) -> float | None:
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
