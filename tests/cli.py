"""run_server: ``python -m server …`` as a subprocess, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``args``; the caller's EBOARD_* settings are left out (only ``env``'s
    count), so a developer's shell cannot change what a test sees."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EBOARD_")}
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "PYTHONPATH": str(ROOT), **(env or {})},
    )
