"""Hypothesis over the client→server socket.io events: each answered with an ack, a
bystander's round trip stays short, and the server logs no unhandled exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from jsonschema import Draft202012Validator

from ..conftest import DemoTemplate
from .events import EventFuzz, inbound_schemas, valid_payloads
from .live import LiveServer

EVENTS = 300
# The goal is 100 ms; two shared cores in CI get a generous bound (make fuzz records the worst).
ROUND_TRIP_BOUND = 0.5


def test_every_client_to_server_event_has_a_schema_the_fuzzer_reads() -> None:
    schemas = inbound_schemas()
    assert {"join", "leave", "chat", "view", "note-update", "publish", "images-first"} <= set(
        schemas
    )
    assert len(schemas) == 18


@settings(max_examples=60, deadline=None)
@given(valid_payloads())
def test_valid_payloads_are_valid(drawn: tuple[str, object]) -> None:
    event, payload = drawn
    assert Draft202012Validator(inbound_schemas()[event]).is_valid(payload)


async def test_every_event_is_answered_and_the_bystander_is_not_delayed(
    demo_template: DemoTemplate, tmp_path: Path
) -> None:
    with LiveServer.start(demo_template.path, tmp_path) as live:
        fuzz = EventFuzz(live, count=EVENTS)
        tally = await fuzz.run(fuzz.draw())
        errors = live.error_lines()
    assert tally.sent == EVENTS
    unanswered = [f"{u.event}: {u.why}: {u.payload[:300]}" for u in tally.unanswered]
    assert not unanswered, "\n".join(unanswered)
    assert tally.answers["ok"] + tally.answers["refused"] == EVENTS
    # Paced under the allowance: the inputs reach validation, not only the rate limiter.
    assert tally.rate_limited <= EVENTS // 20, tally.rate_limited
    assert tally.round_trips, "the bystander made no round trip"
    assert tally.worst_round_trip < ROUND_TRIP_BOUND, sorted(tally.round_trips)[-5:]
    assert not errors, "\n\n".join(errors[:5])
