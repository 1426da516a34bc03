"""Inputs at the edges of the wire contract: huge numbers, deep nesting, oversized messages.
Each is answered naming the field (or, past the frame limit, closed with the reason), and a
second client's round trip is unaffected."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from server.contract import SCHEMAS_DIR
from server.packet import MAX_FRAME_BYTES

from .test_signalling import _next_session
from .wire import RawSocket

# The largest integer every JavaScript client and the database both hold exactly.
ID_MAXIMUM = 2**31 - 1


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


async def _room(connect: Any, server: TestServer, auth: Any, ids: dict[str, int]) -> Any:
    """A bystander in the session, and the session's id."""
    session_id = await _next_session(server, auth, ids["board_id"])
    bystander = await connect("surgeon")
    assert (await bystander.call("join", {"session_id": session_id}))["ok"] is True
    return bystander, session_id


async def _round_trip(bystander: Any) -> float:
    start = time.monotonic()
    assert await bystander.call("hand", {"raised": True}) == {"ok": True}
    return time.monotonic() - start


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("join", '{"session_id": 1e308}', "session_id"),
        ("join", '{"session_id": 18446744073709551616}', "session_id"),
        ("join", '{"session_id": 9007199254740993}', "session_id"),
        ("join", '{"session_id": NaN}', "session_id"),
        ("join", '{"session_id": -Infinity}', "session_id"),
        ("join", '{"session_id": 1e999}', "session_id"),
        ("join", '{"session_id": ' + _nested(500) + "}", "session_id"),
        ("join", '{"session_id": ' + _nested(100_000) + "}", "session_id"),
        ("join", _nested(500), "data"),
        ("agenda", '{"item_id": 1e308}', "item_id"),
        ("note-open", '{"case_id": ' + _nested(500) + "}", "case_id"),
        ("view", '{"seq": 1, "patch": {"annotations": ' + _nested(500) + "}}", "patch.annotations"),
        ("chat", '{"text": "%s"}' % ("x" * 600_000), "text"),
        ("note-update", '{"case_id": 1, "update": "%s"}' % ("A" * 1_000_000), "update"),
        ("chat", '{"text": "unterminated', "text"),
    ],
)
async def test_out_of_bounds_input_is_answered_naming_the_field(
    connect: Any,
    server: TestServer,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    event: str,
    payload: str,
    field: str,
) -> None:
    bystander, session_id = await _room(connect, server, auth, ids)
    token = auth["chair"]["Authorization"].split(" ", 1)[1]
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.open(http, server, token)
        if event != "join":
            assert (await raw.call("join", json.dumps({"session_id": session_id})))["ok"] is True
        reply = await raw.call(event, payload)
        assert reply["ok"] is False, reply
        assert reply["error"]["event"] == event
        assert reply["error"]["field"] == field, reply
        assert len(reply["error"]["message"]) < 300
        # The connection stays usable, and the room was not touched.
        assert (await raw.call("hand", '{"raised": false}'))["ok"] is (event != "join")
    assert await _round_trip(bystander) < 0.1


async def test_python_client_gets_the_same_answer_for_a_huge_session_id(connect: Any) -> None:
    peer = await connect("chair")
    reply = await peer.call("join", {"session_id": 1e308})
    assert reply["ok"] is False
    assert reply["error"]["field"] == "session_id"
    assert "2147483647" in reply["error"]["message"]


async def test_a_frame_over_the_limit_is_closed_as_too_big_and_others_are_unaffected(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    bystander, _ = await _room(connect, server, auth, ids)
    token = auth["chair"]["Authorization"].split(" ", 1)[1]
    async with aiohttp.ClientSession() as http:
        raw = await RawSocket.open(http, server, token)
        # The server closes before the whole frame is sent: it reads the header, not the body.
        sending = asyncio.ensure_future(raw.send("chat", '{"text": "%s"}' % ("x" * 10_000_000)))
        closed = await raw.ws.receive(timeout=10)
        await asyncio.gather(sending, return_exceptions=True)
        assert closed.type == aiohttp.WSMsgType.CLOSE
        assert closed.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        # The sender may connect again at once.
        again = await RawSocket.open(http, server, token)
        assert (await again.call("hand", '{"raised": true}'))["error"]["field"] is None
    assert await _round_trip(bystander) < 0.1


def test_every_inbound_integer_is_bounded() -> None:
    """1e308 is an integer to JSON Schema; without a maximum it reaches the database."""

    def integers(node: Any, path: str) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
                found.append((path, node.get("maximum")))
            for key, value in node.items():
                found += integers(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                found += integers(value, f"{path}/{i}")
        return found

    docs = [json.loads(p.read_text()) for p in sorted(Path(SCHEMAS_DIR).glob("*.json"))]
    inbound = [d for d in docs if d.get("x-direction") == "client-to-server"]
    shared = json.loads((Path(SCHEMAS_DIR).parent / "view-state.json").read_text())
    unbounded = [
        (doc.get("title", "view-state"), path)
        for doc in [*inbound, shared]
        for path, maximum in integers(doc, "")
        if maximum is None or maximum > 2**53 - 1
    ]
    assert unbounded == []
    assert MAX_FRAME_BYTES >= 4 * 174_764  # the largest valid event fits with room to spare
