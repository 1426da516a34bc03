"""The prefetch pacer (client/src/viewer/pacer.js) under an injected clock, run by Node: it keeps
to the rate it is given, follows the rate as it changes (0 pauses), and never has more requests
in flight than allowed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

PACER = Path(__file__).resolve().parents[2] / "client" / "src" / "viewer" / "pacer.js"
NODE = shutil.which("node")

# A virtual clock: a timer that runs out moves it on; requests take no time unless held.
SCRIPT = """
import { Pacer } from %(pacer)s;
const scenario = %(scenario)s;
let clock = 0;
let rate = scenario.rate;
let pausedUntil = null;
// A timer the pacer gave up on (a request ended first) does not move the clock.
const wait = (ms, signal) => new Promise((resolve) => setTimeout(() => {
  if (!signal.aborted) clock += ms;
  if (pausedUntil !== null && clock >= pausedUntil) { rate = scenario.rate; pausedUntil = null; }
  resolve();
}, 0));
const pacer = new Pacer({ rate: () => rate, inFlight: scenario.inFlight, guess: scenario.guess,
  now: () => clock, wait });
const never = new AbortController().signal;
const starts = [];
let running = 0, most = 0;
for (let i = 0; i < scenario.count; i += 1) {
  if (scenario.pauseAt === i) { rate = 0; pausedUntil = clock + scenario.pauseMs; }
  await pacer.ready(() => false, never);
  starts.push(clock);
  running += 1; most = Math.max(most, running);
  pacer.start(() => new Promise((resolve) => {
    const done = () => { running -= 1; resolve(scenario.size); };
    // Held requests end on a real timer, after the pacer had its chance to start more.
    if (scenario.hold) setTimeout(done, 5); else queueMicrotask(done);
  }));
}
console.log(JSON.stringify({ starts, most }));
"""


def _run(**scenario: Any) -> dict[str, Any]:
    assert NODE is not None
    script = SCRIPT % {"pacer": json.dumps(PACER.as_uri()), "scenario": json.dumps(scenario)}
    out = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


pytestmark = pytest.mark.skipif(NODE is None, reason="Node is needed to run the client's pacer")


def test_requests_keep_to_the_rate() -> None:
    rate, size, count = 600_000, 15_000, 40
    starts = _run(rate=rate, inFlight=2, guess=200_000, size=size, count=count)["starts"]
    seconds = (starts[-1] - starts[0]) / 1000
    sent = size * (count - 1)
    burst = rate / 8 * 0.5
    # Never above the rate (a half-second burst aside) and not far below it.
    assert sent - burst <= rate / 8 * seconds
    assert sent >= 0.8 * rate / 8 * seconds
    # Evenly: no gap longer than two requests' worth at the rate.
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert max(gaps) <= 2 * size / (rate / 8) * 1000 + 1


def test_the_rate_is_read_before_each_request_and_zero_pauses() -> None:
    starts = _run(
        rate=600_000, inFlight=2, guess=15_000, size=15_000, count=12, pauseAt=6, pauseMs=5_000
    )["starts"]
    assert starts[6] - starts[5] >= 5_000  # nothing went out while the rate was 0


def test_never_more_requests_in_flight_than_allowed() -> None:
    result = _run(rate=10**9, inFlight=2, guess=1, size=1, count=10, hold=True)
    assert result["most"] == 2
