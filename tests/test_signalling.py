"""The /board namespace with real socket.io clients against the real app on a real port."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestServer
from sqlmodel import select

from server.models import AuditRecord
from server.services import SERVICES


async def _next_session(server: TestServer, auth: dict[str, dict[str, str]], board: int) -> int:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.make_url(f"/api/boards/{board}/sessions"), headers=auth["coordinator"]
        ) as resp:
            return int((await resp.json())["items"][0]["id"])


async def test_connection_without_token_is_refused(server: TestServer) -> None:
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    client.on("connect_error", refusals.append, namespace="/board")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            str(server.make_url("/")), namespaces=["/board"], transports=["websocket"]
        )
    assert refusals == [{"message": "log in first: no token was sent"}]


async def test_events_before_join_are_refused(connect: Any) -> None:
    peer = await connect("chair")
    reply = await peer.call("chat", {"text": "hello"})
    assert reply == {
        "ok": False,
        "error": {"event": "chat", "field": None, "message": "join a session first"},
    }
    assert peer.seen("error")[0]["message"] == "join a session first"


async def test_join_returns_snapshot_and_others_see_the_newcomer(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await _next_session(server, auth, ids["board_id"])
    chair = await connect("chair")
    joined = await chair.call("join", {"session_id": sid})
    assert joined["ok"] is True and joined["you"] == "u3" and joined["admitted"] is True
    snap = joined["snapshot"]
    assert snap["board_name"] == "Thoracic MDT" and snap["chair"] == "u3"
    assert joined["media_caps"]["camera"]["maxBitrate"] == 500_000
    assert joined["media_caps"]["screen"]["maxFramerate"] == 5
    surgeon = await connect("surgeon")
    second = await surgeon.call("join", {"session_id": sid})
    assert [p["name"] for p in second["snapshot"]["participants"]] == [
        "Dr. Zhang Wei (chair)",
        "Dr. Zhao Lei",
    ]
    newcomer = await chair.wait_for("participant", lambda p: p["id"] == "u6")
    assert newcomer["specialty"] == "surgery" and newcomer["external"] is False


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "session_id"),
        ({"session_id": "one"}, "session_id"),
        ({"session_id": 1, "extra": True}, "extra"),
        (None, "data"),
    ],
)
async def test_malformed_join_names_the_field(connect: Any, data: Any, field: str) -> None:
    peer = await connect("chair")
    reply = await peer.call("join", data)
    assert reply["ok"] is False and reply["error"]["field"] == field


async def test_joining_a_session_of_another_board_is_refused(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]]
) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url("/api/boards"),
            headers=auth["coordinator"],
            json={
                "name": "Other",
                "tumor_site": "generic",
                "timezone": "UTC",
                "rrule": "FREQ=DAILY",
                "start_time": "12:00",
                "duration_minutes": 60,
            },
        ) as resp:
            other = (await resp.json())["next_session"]["id"]
    peer = await connect("surgeon")
    reply = await peer.call("join", {"session_id": other})
    assert reply["ok"] is False and "not invited" in reply["error"]["message"]


async def test_joining_a_session_that_is_over_or_cancelled_is_refused(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url(f"/api/boards/{ids['board_id']}/sessions"),
            headers=auth["coordinator"],
            json={"start": "2026-01-05T13:30:00Z", "end": "2026-01-05T15:00:00Z"},
        ) as resp:
            past = (await resp.json())["id"]
        sid = await _next_session(server, auth, ids["board_id"])
        async with http.post(
            server.make_url(f"/api/sessions/{sid}/cancel"), headers=auth["coordinator"]
        ) as resp:
            assert resp.status == 200
    peer = await connect("chair")
    over = await peer.call("join", {"session_id": past})
    assert over["ok"] is False and "is over" in over["error"]["message"]
    cancelled = await peer.call("join", {"session_id": sid})
    assert cancelled["ok"] is False and "cancelled" in cancelled["error"]["message"]
    missing = await peer.call("join", {"session_id": 99999})
    assert missing["ok"] is False and missing["error"]["field"] == "session_id"


async def test_chair_moves_agenda_everyone_sees_it_and_others_may_not(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    import aiohttp

    sid = await _next_session(server, auth, ids["board_id"])
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url(f"/api/sessions/{sid}/agenda"),
            headers=auth["coordinator"],
            json={"case_id": ids["ready_case"], "timebox_minutes": 15},
        ) as resp:
            item = (await resp.json())["id"]
    chair, surgeon = await connect("chair"), await connect("surgeon")
    await chair.call("join", {"session_id": sid})
    await surgeon.call("join", {"session_id": sid})

    refused = await surgeon.call("agenda", {"item_id": item})
    assert (
        refused["ok"] is False
        and refused["error"]["message"] == "only the chair may move the agenda"
    )
    not_presenter = await surgeon.call("presenter", {"participant": "u6"})
    assert not_presenter["ok"] is False and "only the chair" in not_presenter["error"]["message"]
    unknown = await chair.call("agenda", {"item_id": 4242})
    assert unknown["ok"] is False and unknown["error"]["field"] == "item_id"

    assert (await chair.call("agenda", {"item_id": item}))["ok"] is True
    state = await surgeon.wait_for("state", lambda s: s["agenda"]["current"] == item)
    assert state["agenda"]["items"][0]["case_number"].endswith("-0001")
    assert state["agenda"]["current_started_at"] is not None
    assert (await chair.call("presenter", {"participant": "u6"}))["ok"] is True
    await surgeon.wait_for("state", lambda s: s["presenter"] == "u6")


async def test_chat_reaches_everyone_and_oversized_chat_is_refused(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await _next_session(server, auth, ids["board_id"])
    chair, surgeon = await connect("chair"), await connect("surgeon")
    await chair.call("join", {"session_id": sid})
    await surgeon.call("join", {"session_id": sid})
    big = await surgeon.call("chat", {"text": "x" * 2001})
    assert big["ok"] is False and big["error"] == {
        "event": "chat",
        "field": "text",
        "message": "chat: text: is longer than 2000 characters",
    }
    assert (await surgeon.call("chat", {"text": "CT shows N2 disease"}))["ok"] is True
    message = await chair.wait_for("chat-message")
    assert message["name"] == "Dr. Zhao Lei" and message["text"] == "CT shows N2 disease"
    assert not [m for m in chair.seen("chat-message") if "x" * 100 in m["text"]]


async def test_event_flood_is_rate_limited_and_others_are_unaffected(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await _next_session(server, auth, ids["board_id"])
    chair, surgeon = await connect("chair"), await connect("surgeon")
    await chair.call("join", {"session_id": sid})
    await surgeon.call("join", {"session_id": sid})
    replies = await asyncio.gather(
        *[surgeon.call("hand", {"raised": i % 2 == 0}) for i in range(120)]
    )
    limited = [r for r in replies if not r["ok"]]
    assert limited and all("rate limited" in r["error"]["message"] for r in limited)
    assert (await chair.call("chat", {"text": "still here"}))["ok"] is True


async def test_second_join_of_the_same_participant_wins_and_closes_the_first(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await _next_session(server, auth, ids["board_id"])
    first = await connect("surgeon")
    await first.call("join", {"session_id": sid})
    second = await connect("surgeon")
    reply = await second.call("join", {"session_id": sid})
    assert reply["ok"] is True
    await first.wait_for("kicked")
    for _ in range(100):
        if not first.client.connected:
            break
        await asyncio.sleep(0.02)
    assert not first.client.connected
    assert [p["id"] for p in reply["snapshot"]["participants"]] == ["u6"]
    assert (await second.call("chat", {"text": "new connection works"}))["ok"] is True


async def test_external_participant_waits_in_lobby_until_the_chair_admits(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await _next_session(server, auth, ids["board_id"])
    chair = await connect("chair")
    await chair.call("join", {"session_id": sid})
    assert (await chair.call("chat", {"text": "before the guest arrives"}))["ok"]
    external = await connect("external")
    waiting = await external.call("join", {"session_id": sid})
    assert waiting["ok"] is True and waiting["admitted"] is False
    # Nothing of the discussion reaches the lobby: not who is there, not the chat.
    assert waiting["snapshot"]["participants"] == [] and waiting["snapshot"]["chat"] == []
    assert (await chair.call("chat", {"text": "private before admission"}))["ok"]
    lobby = await chair.wait_for("lobby", lambda d: d["waiting"])
    assert lobby["waiting"][0]["institution"] == "Rochester Cancer Center"
    refused = await external.call("chat", {"text": "hello?"})
    assert refused["ok"] is False and "not been admitted" in refused["error"]["message"]
    assert (await chair.call("admit", {"participant": waiting["you"]}))["ok"] is True
    state = await external.wait_for("state")
    assert waiting["you"] in [p["id"] for p in state["participants"]]
    assert external.seen("chat-message") == []
    assert (await external.call("chat", {"text": "hello from Rochester"}))["ok"] is True
    await external.wait_for("chat-message", lambda m: m["text"] == "hello from Rochester")


async def test_reconnect_within_grace_keeps_the_place_and_leave_after_grace_is_announced(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await _next_session(server, auth, ids["board_id"])
    chair, surgeon = await connect("chair"), await connect("surgeon")
    await chair.call("join", {"session_id": sid})
    await surgeon.call("join", {"session_id": sid})
    await surgeon.client.disconnect()
    await chair.wait_for(
        "participant", lambda p: p["id"] == "u6" and p["connection"] == "reconnecting"
    )
    back = await connect("surgeon")
    again = await back.call("join", {"session_id": sid})
    assert again["ok"] is True
    await asyncio.sleep(0.8)  # past the 0.5 s grace: the old connection's timer must not fire
    assert chair.seen("participant-left") == []
    await back.client.disconnect()
    left = await chair.wait_for("participant-left", seconds=3)
    assert left == {"id": "u6", "reason": "disconnected"}


async def test_joins_are_audited(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid = await _next_session(server, auth, ids["board_id"])
    chair = await connect("chair")
    await chair.call("join", {"session_id": sid})
    async with server.app[SERVICES].db.read() as session:
        rows = list(
            await session.exec(select(AuditRecord).where(AuditRecord.action == "session.join"))
        )
    assert [(r.actor_id, r.target_id) for r in rows] == [(3, str(sid))]


async def test_agenda_edited_during_the_session_reaches_the_room(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    import aiohttp

    sid = await _next_session(server, auth, ids["board_id"])
    chair = await connect("chair")
    joined = await chair.call("join", {"session_id": sid})
    assert joined["snapshot"]["agenda"]["items"] == []
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url(f"/api/sessions/{sid}/agenda"),
            headers=auth["coordinator"],
            json={"case_id": ids["ready_case"], "timebox_minutes": 15},
        ) as resp:
            item = (await resp.json())["id"]
    assert (await chair.call("agenda", {"item_id": item}))["ok"] is True
    state = await chair.wait_for("state", lambda s: s["agenda"]["current"] == item)
    assert [i["id"] for i in state["agenda"]["items"]] == [item]
