"""`make fuzz`: at least 10,000 REST inputs and 5,000 socket.io events against live servers
seeded with the demo; writes tests/fuzz/results/fuzz.json and prints a table. Exits 1 when
anything answered 5xx or against its declaration, an event went unanswered, or the server
logged an error."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .events import EventFuzz, EventTally
from .live import LiveServer, seed_data_dir
from .rest import RestFuzz, RestTally

RESULTS = Path(__file__).resolve().parent / "results" / "fuzz.json"


def _rest(template: Path, work: Path, target: int, examples: int) -> dict[str, Any]:
    start = time.monotonic()
    tally = RestTally()
    rounds = 0
    with LiveServer.start(template, work) as live:
        while tally.inputs < target:
            RestFuzz(live, examples=examples, seed=rounds * 7919, tally=tally).run()
            rounds += 1
        errors = live.error_lines()
    distinct: dict[tuple[str, str, int], Any] = {}
    for f in tally.findings:
        distinct.setdefault((f.operation, f.check, f.status), f)
    return {
        "inputs": tally.inputs,
        "rounds": rounds,
        "examples_per_operation_and_role": examples,
        "by_status": {str(k): v for k, v in sorted(tally.statuses.items())},
        "server_errors": tally.server_errors,
        "successes_by_operation": dict(sorted(tally.successes.items())),
        "findings": len(tally.findings),
        "distinct_findings": [f.json() for f in distinct.values()],
        "server_log_errors": len(errors),
        "first_log_errors": errors[:10],
        "seconds": round(time.monotonic() - start, 1),
    }


def _events(template: Path, work: Path, count: int) -> dict[str, Any]:
    start = time.monotonic()
    with LiveServer.start(template, work) as live:
        fuzz = EventFuzz(live, count=count)
        tally: EventTally = asyncio.run(fuzz.run(fuzz.draw()))
        errors = live.error_lines()
    trips = sorted(tally.round_trips)
    return {
        "sent": tally.sent,
        "answers": dict(tally.answers),
        "rate_limited": tally.rate_limited,
        "per_event": dict(sorted(tally.per_event.items())),
        "unanswered": len(tally.unanswered),
        "unanswered_by_reason": dict(Counter(u.why for u in tally.unanswered)),
        "unanswered_examples": [u.json() for u in tally.unanswered[:20]],
        "bystander": {
            "round_trips": len(trips),
            "worst_ms": round(tally.worst_round_trip * 1000, 1),
            "p99_ms": round(trips[int(len(trips) * 0.99)] * 1000, 1) if trips else None,
            "median_ms": round(statistics.median(trips) * 1000, 1) if trips else None,
        },
        "server_log_errors": len(errors),
        "first_log_errors": errors[:10],
        "seconds": round(time.monotonic() - start, 1),
    }


def _table(result: dict[str, Any]) -> str:
    rest, events = result["rest"], result["events"]
    by_status = ", ".join(f"{k}: {v}" for k, v in rest["by_status"].items())
    rows = [
        ("REST inputs", rest["inputs"]),
        ("REST answers by status", by_status),
        ("REST 5xx", rest["server_errors"]),
        ("REST answers not as declared (distinct)", len(rest["distinct_findings"])),
        ("socket.io events sent", events["sent"]),
        ("socket.io answers", ", ".join(f"{k}: {v}" for k, v in events["answers"].items())),
        ("socket.io refusals by the rate limiter", events["rate_limited"]),
        ("socket.io events unanswered", events["unanswered"]),
        ("bystander round trips", events["bystander"]["round_trips"]),
        ("bystander worst / p99 / median ms", "{worst_ms} / {p99_ms} / {median_ms}"
         .format(**events["bystander"])),
        ("server log errors (REST, events)",
         f"{rest['server_log_errors']}, {events['server_log_errors']}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    for f in rest["distinct_findings"]:
        lines.append(f"  {f['operation']} [{f['role']}] {f['status']} {f['check']}")
    for u in events["unanswered_examples"]:
        lines.append(f"  unanswered {u['event']}: {u['why']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    parser.add_argument("--rest-inputs", type=int, default=10_000)
    parser.add_argument("--rest-examples", type=int, default=10, help="per operation and role")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eboard-fuzz-") as tmp:
        root = Path(tmp)
        template = root / "template"
        template.mkdir()
        print("seeding the demo…", flush=True)
        seed_data_dir(template)
        (root / "rest").mkdir()
        (root / "events").mkdir()
        print(f"REST: {args.rest_inputs} inputs or more…", flush=True)
        rest = _rest(template, root / "rest", args.rest_inputs, args.rest_examples)
        print(f"socket.io: {args.events} events…", flush=True)
        events = _events(template, root / "events", args.events)
    result = {"finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    result |= {"rest": rest, "events": events}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(_table(result))
    print(f"written to {args.out}")
    clean = not (
        rest["server_errors"]
        or rest["distinct_findings"]
        or rest["server_log_errors"]
        or events["unanswered"]
        or events["server_log_errors"]
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
