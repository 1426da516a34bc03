"""EventFuzz: client→server socket.io events drawn from schemas/events/ (valid ones from the
schema, and invalid ones: wrong types, missing fields, huge numbers, deep nesting, long
strings), sent by board members who joined a live session, while a bystander measures its own
round trip every 100 ms."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import requests
import socketio
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from .live import LiveServer

__all__ = ["EventFuzz", "EventTally", "event_inputs", "inbound_schemas", "valid_payloads"]

EVENTS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "events"
FUZZERS = ("chair", "radiologist", "coordinator")
BYSTANDER = "observer"
ACK_SECONDS = 5.0
# The server allows a connection 20 events a second (burst 40); sent faster, most inputs would
# be refused by the rate limiter before validation ever saw them. 50 a second across the three
# senders keeps each one under its allowance.
PACE_SECONDS = 0.02
# Events after which the fuzzer is no longer in the session (or in another one).
REJOIN_AFTER = {"join", "leave"}


def _resolve(node: Any, doc: dict[str, Any], folder: Path, depth: int = 0) -> Any:
    """``node`` with every $ref inlined (hypothesis-jsonschema resolves no relative files)."""
    if depth > 20:
        raise ValueError("schema references nest too deep")
    if isinstance(node, list):
        return [_resolve(n, doc, folder, depth) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target, _, pointer = node["$ref"].partition("#")
        base, where = (doc, folder)
        if target:
            path = (folder / target).resolve()
            base, where = json.loads(path.read_text()), path.parent
        found: Any = base
        for part in [p for p in pointer.split("/") if p]:
            found = found[part.replace("~1", "/").replace("~0", "~")]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**found, **rest}, base, where, depth + 1)
    return {
        k: _resolve(v, doc, folder, depth)
        for k, v in node.items()
        if k not in ("$id", "$schema", "$defs")
    }


def inbound_schemas(folder: Path = EVENTS_DIR) -> dict[str, dict[str, Any]]:
    """Every client→server event's schema, self-contained."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("x-direction") == "client-to-server":
            out[path.stem] = _resolve(doc, doc, folder)
    return out


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_HUGE = st.sampled_from([2**53 + 1, -(2**63), 2**64, 10**30, 10**400, 1e308, -1e308, 1.5e300])


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


_DEEP = st.integers(min_value=30, max_value=600).map(_nested)
# Up to past the 256 KiB message limit, which must be refused with an answer too.
_LONG = st.integers(min_value=1_000, max_value=400_000).map(lambda n: "x" * n)
_WRONG = st.one_of(
    _SCALARS, _HUGE, _DEEP, _LONG, st.lists(_SCALARS, max_size=3), st.just({}), st.just([])
)


def _invalid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Payloads that break the schema: a field of the wrong kind, missing, huge, deep, long;
    or a payload that is no object at all."""
    props = list(schema.get("properties", {}))
    required = list(schema.get("required", []))
    whole = st.one_of(_WRONG, st.just(None))
    if not props:
        return whole

    @st.composite
    def broken(draw: st.DrawFn) -> Any:
        base: dict[str, Any] = draw(st.dictionaries(st.sampled_from(props), _SCALARS))
        how = draw(st.sampled_from(["replace", "drop", "extra"]))
        if how == "drop" and required:
            base.pop(draw(st.sampled_from(required)), None)
        elif how == "extra":
            base[draw(st.text(min_size=1, max_size=10))] = draw(_WRONG)
        else:
            base[draw(st.sampled_from(props))] = draw(_WRONG)
        return base

    return st.one_of(whole, broken())


def _valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Instances of ``schema``: built from its keywords, kept only when the validator agrees
    (so a keyword this builder ignores never lets an invalid one through)."""
    return _build(schema).filter(Draft202012Validator(schema).is_valid)


def _build(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            rest = {k: v for k, v in schema.items() if k != key}
            return st.one_of(*[_build({**rest, **alternative}) for alternative in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*[_build({**schema, "type": k}) for k in kind])
    if kind == "object" or "properties" in schema:
        return _object(schema)
    if kind == "array":
        items = _build(schema.get("items", {}))
        return st.lists(
            items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 5), 5)
        )
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=max(low, min(schema.get("maxLength", 40), 40)))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return _SCALARS


def _object(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    props = {k: _build(v) for k, v in schema.get("properties", {}).items()}
    required = [k for k in schema.get("required", []) if k in props]
    optional = {k: v for k, v in props.items() if k not in required}
    extra = schema.get("additionalProperties")
    fixed = st.fixed_dictionaries(
        {k: props[k] for k in required}, optional=optional if optional else None
    )
    if isinstance(extra, dict):
        names = schema.get("propertyNames", {})
        keys = _build({"type": "string", **names})
        more = st.dictionaries(keys, _build(extra), max_size=3)
        return st.tuples(fixed, more).map(lambda pair: {**pair[1], **pair[0]})
    return fixed


def valid_payloads() -> st.SearchStrategy[tuple[str, Any]]:
    """(event, payload) pairs valid by the event's schema."""
    schemas = inbound_schemas()
    return st.one_of(*[st.tuples(st.just(n), _valid(s)) for n, s in schemas.items()])


def event_inputs(schemas: dict[str, dict[str, Any]]) -> st.SearchStrategy[tuple[str, Any]]:
    """(event, payload) pairs: about half valid by the schema, half not."""
    choices = []
    for name, schema in schemas.items():
        valid = _valid(schema)
        choices.append(st.tuples(st.just(name), st.one_of(valid, _invalid(schema))))
    return st.one_of(*choices)


@dataclass
class Unanswered:
    event: str
    payload: str
    why: str

    def json(self) -> dict[str, str]:
        return self.__dict__.copy()


@dataclass
class EventTally:
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "ok" / "refused" / event names
    per_event: Counter[str] = field(default_factory=Counter)
    unanswered: list[Unanswered] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)  # the bystander's, in seconds
    rate_limited: int = 0  # refusals by the rate limiter: inputs that validation never saw

    @property
    def worst_round_trip(self) -> float:
        return max(self.round_trips, default=0.0)


class _Member:
    """One logged-in board member's socket.io connection, joined to the session."""

    def __init__(self, live: LiveServer, username: str, session_id: int) -> None:
        self.username = username
        self._live = live
        self._session_id = session_id
        self.client = socketio.AsyncClient(reconnection=False)

    async def connect(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        await self.client.connect(
            self._live.url,
            namespaces=["/board"],
            auth={"token": self._live.tokens[self.username]},
            transports=["websocket"],
        )
        reply = await self.call("join", {"session_id": self._session_id})
        assert reply.get("ok"), f"{self.username} could not join: {reply}"

    async def call(self, event: str, data: Any) -> Any:
        # python-socketio walks a payload recursively to find binary parts: a 600-deep one
        # needs more frames than the default limit allows, on this side of the wire.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10_000))
        try:
            return await self.client.call(event, data, namespace="/board", timeout=ACK_SECONDS)
        finally:
            sys.setrecursionlimit(limit)

    async def rejoin(self) -> None:
        if not self.client.connected:
            await self.connect()
            return
        reply = await self.call("join", {"session_id": self._session_id})
        if not reply.get("ok"):
            await self.call("leave", {})
            await self.call("join", {"session_id": self._session_id})

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()


class EventFuzz:
    """Sends ``count`` drawn events through the fuzzing members, one at a time, each awaited."""

    def __init__(self, live: LiveServer, *, count: int, seed: int = 0) -> None:
        self._live = live
        self._count = count
        self._seed = seed
        self.tally = EventTally()

    def _session_id(self) -> int:
        headers = self._live.headers("coordinator")
        boards = requests.get(f"{self._live.url}/api/boards", headers=headers, timeout=30).json()
        board = boards["items"][0]["id"]
        sessions = requests.get(
            f"{self._live.url}/api/boards/{board}/sessions", headers=headers, timeout=30
        ).json()
        return int(sessions["items"][0]["id"])

    def draw(self) -> list[tuple[str, Any]]:
        """The events to send, drawn up front (hypothesis runs outside the event loop)."""
        drawn: list[tuple[str, Any]] = []
        strategy = event_inputs(inbound_schemas())

        @hypothesis.settings(
            max_examples=self._count,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
        @hypothesis.seed(self._seed)
        @hypothesis.given(strategy)
        def collect(item: tuple[str, Any]) -> None:
            drawn.append(item)

        collect()
        return drawn

    async def run(self, inputs: list[tuple[str, Any]]) -> EventTally:
        session_id = self._session_id()
        members = [_Member(self._live, name, session_id) for name in FUZZERS]
        bystander = _Member(self._live, BYSTANDER, session_id)
        for member in [*members, bystander]:
            await member.connect()
        done = asyncio.Event()
        watcher = asyncio.create_task(self._watch(bystander, done))
        try:
            loop = asyncio.get_running_loop()
            next_at = loop.time()
            for i, (event, payload) in enumerate(inputs):
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at = loop.time() + PACE_SECONDS
                await self._send(members[i % len(members)], event, payload)
        finally:
            done.set()
            await watcher
            for member in [*members, bystander]:
                await member.close()
        return self.tally

    async def _send(self, member: _Member, event: str, payload: Any) -> None:
        self.tally.sent += 1
        self.tally.per_event[event] += 1
        why = None
        try:
            reply = await member.call(event, payload)
        except socketio.exceptions.TimeoutError:
            why = f"no ack within {ACK_SECONDS}s"
        except socketio.exceptions.BadNamespaceError:
            why = "no connection"
        else:
            if isinstance(reply, dict) and isinstance(reply.get("ok"), bool):
                self.tally.answers["ok" if reply["ok"] else "refused"] += 1
                if "rate limited" in str(reply.get("error", {}).get("message", "")):
                    self.tally.rate_limited += 1
            else:
                why = f"ack without ok: {str(reply)[:200]}"
        if not member.client.connected:
            why = f"{why or 'answered'}; the server closed the connection"
        if why is not None:
            self._unanswered(event, payload, why)
        if not member.client.connected:
            await member.connect()
        elif event in REJOIN_AFTER:
            await member.rejoin()

    def _unanswered(self, event: str, payload: Any, why: str) -> None:
        try:
            text = json.dumps(payload)
        except (RecursionError, ValueError):
            text = repr(payload)
        shown = text if len(text) <= 500 else f"{text[:500]}… ({len(text)} characters)"
        self.tally.unanswered.append(Unanswered(event, shown, why))

    async def _watch(self, bystander: _Member, done: asyncio.Event) -> None:
        """The bystander raises and lowers a hand every 100 ms and times each ack."""
        raised = False
        while not done.is_set():
            raised = not raised
            start = time.perf_counter()
            try:
                await bystander.call("hand", {"raised": raised})
            except socketio.exceptions.TimeoutError:
                pass
            self.tally.round_trips.append(time.perf_counter() - start)
            try:
                await asyncio.wait_for(done.wait(), 0.1)
            except TimeoutError:
                pass
