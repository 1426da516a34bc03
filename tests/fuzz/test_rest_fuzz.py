"""Schemathesis against a live server: every operation, with each role's token and without
one; every answer's status and media type declared, its body as declared, never a 5xx."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import DemoTemplate
from .live import LiveServer
from .rest import RestFuzz

# Inputs per operation and role (and 2 without a token): about 1,000 requests, a minute or so.
EXAMPLES = 2


def test_every_operation_answers_as_declared_for_every_role(
    demo_template: DemoTemplate, tmp_path: Path
) -> None:
    with LiveServer.start(demo_template.path, tmp_path) as live:
        tally = RestFuzz(live, examples=EXAMPLES).run()
        errors = live.error_lines()
    assert tally.inputs > 500, tally.statuses
    # One line per distinct (operation, check, status), with the first input that caused it.
    distinct = {}
    for f in tally.findings:
        distinct.setdefault((f.operation, f.check, f.status), f)
    report = [
        f"{op} [{f.role}] {status} {check}: {json.dumps(f.request)[:400]} -> {f.body[:300]}"
        for (op, check, status), f in sorted(distinct.items())
    ]
    assert not report, "\n".join(report)
    assert not errors, "\n\n".join(errors[:5])
