"""The shared view (issue #4): the presenter's patches reach every follower with the server's
sequence number, late joiners get the whole state, and nobody else can move the view. Real
socket.io clients against the real app."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from .peers import Peer


def _viewport(alias: str | None, index: int, zoom: float = 1.0) -> dict[str, Any]:
    return {
        "series": alias,
        "index": index,
        "voi": {"center": -600, "width": 1500},
        "invert": False,
        "presentation": {
            "zoom": zoom,
            "pan": [0.1, -0.05],
            "rotation": 0,
            "flipHorizontal": False,
            "flipVertical": False,
        },
    }


async def _board(
    server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int], *, agenda: bool
) -> tuple[int, str, int]:
    """The next session, the ready case's CT alias and image count; the case on the agenda."""
    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.make_url(f"/api/boards/{ids['board_id']}/sessions"), headers=auth["coordinator"]
        ) as resp:
            sid = int((await resp.json())["items"][0]["id"])
        async with http.get(
            server.make_url(f"/api/cases/{ids['ready_case']}/imaging"), headers=auth["radiologist"]
        ) as resp:
            series = (await resp.json())["series"][0]
        if agenda:
            async with http.post(
                server.make_url(f"/api/sessions/{sid}/agenda"),
                headers=auth["coordinator"],
                json={"case_id": ids["ready_case"], "timebox_minutes": 15},
            ) as resp:
                assert resp.status == 201, await resp.text()
    return sid, series["alias"], series["instances"]


async def _room(connect: Any, sid: int, *names: str) -> list[Peer]:
    """Join everyone named; the chair admits the external guest; the radiologist presents."""
    peers = [await connect(name) for name in names]
    for peer in peers:
        reply = await peer.call("join", {"session_id": sid})
        assert reply["ok"], reply
        if not reply["admitted"]:
            assert (await peers[0].call("admit", {"participant": reply["you"]}))["ok"]
    assert (await peers[0].call("presenter", {"participant": "u4"}))["ok"]
    return peers


async def test_presenter_patches_reach_followers_in_order_and_late_joiners_get_the_state(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, alias, count = await _board(server, auth, ids, agenda=True)
    chair, presenter, external = await _room(connect, sid, "chair", "radiologist", "external")

    for seq, index in enumerate(range(count), start=1):
        reply = await presenter.call(
            "view", {"seq": seq, "patch": {"viewports": {"0": _viewport(alias, index)}}}
        )
        assert reply == {"ok": True, "seq": seq}
    layout = {"layout": "1x2", "active": 1, "viewports": {"1": _viewport(alias, 0, zoom=2.5)}}
    assert (await presenter.call("view", {"seq": count + 1, "patch": layout}))["ok"]

    for follower in (chair, external):
        last = await follower.wait_for("view-update", lambda u: u["seq"] == count + 1)
        updates = follower.seen("view-update")
        assert [u["seq"] for u in updates] == list(range(1, count + 2))
        assert [u["after"] for u in updates] == list(range(count + 1))  # the state each follows
        assert [u["patch"]["viewports"]["0"]["index"] for u in updates[:-1]] == list(range(count))
        assert last == {"seq": count + 1, "after": count, "by": "u4", "patch": layout}
    assert presenter.seen("view-update") == []  # the presenter is not echoed

    # A stale patch (an older sequence number) is dropped, not applied, not relayed.
    stale = await presenter.call("view", {"seq": 2, "patch": {"layout": "2x2"}})
    assert stale == {"ok": True, "dropped": True, "seq": count + 1}

    late = await connect("surgeon")
    joined = await late.call("join", {"session_id": sid})
    view = joined["snapshot"]["view"]
    assert view["seq"] == count + 1
    assert view["state"]["layout"] == "1x2" and view["state"]["active"] == 1
    assert [v["index"] for v in view["state"]["viewports"]] == [count - 1, 0]
    assert view["state"]["viewports"][1]["presentation"]["zoom"] == 2.5
    await asyncio.sleep(0.1)
    assert [u["seq"] for u in chair.seen("view-update")][-1] == count + 1


async def test_view_is_named_by_alias_and_index_only(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    """The external follower gets the same alias the internal presenter sent; their own series
    list (the de-identified copy, other UIDs) names the same alias."""
    sid, alias, count = await _board(server, auth, ids, agenda=True)
    _, presenter, external = await _room(connect, sid, "chair", "radiologist", "external")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            server.make_url(f"/api/cases/{ids['ready_case']}/imaging"), headers=auth["external"]
        ) as resp:
            theirs = (await resp.json())["series"]
        async with http.get(
            server.make_url(f"/api/cases/{ids['ready_case']}/imaging"), headers=auth["radiologist"]
        ) as resp:
            ours = (await resp.json())["series"]
    assert [s["alias"] for s in theirs] == [s["alias"] for s in ours]
    assert theirs[0]["series_instance_uid"] != ours[0]["series_instance_uid"]
    assert theirs[0]["instances"] == ours[0]["instances"] == count

    note = {
        "id": "a1",
        "tool": "Length",
        "series": alias,
        "index": 1,
        "points": [[0, 0, 5], [30, 40, 5]],
    }
    assert (await presenter.call("view", {"seq": 1, "patch": {"annotations": [note]}}))["ok"]
    update = await external.wait_for("view-update")
    assert update["patch"]["annotations"] == [note]
    wire = repr(external.events)
    assert ours[0]["series_instance_uid"] not in wire
    assert ours[0]["study_instance_uid"] not in wire


async def test_only_the_presenter_moves_the_view_and_the_pointer(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, alias, _ = await _board(server, auth, ids, agenda=True)
    chair, presenter, surgeon = await _room(connect, sid, "chair", "radiologist", "surgeon")
    patch = {"seq": 1, "patch": {"viewports": {"0": _viewport(alias, 0)}}}
    for follower in (chair, surgeon):
        refused = await follower.call("view", patch)
        assert refused["ok"] is False
        assert refused["error"]["message"] == "only the presenter may change the shared view"
        pointer = await follower.call("pointer", {"viewport": 0, "point": [1, 2, 3]})
        assert pointer["ok"] is False
    await asyncio.sleep(0.1)
    assert presenter.seen("view-update") == [] and presenter.seen("pointer-move") == []
    joined = await (await connect("pathologist")).call("join", {"session_id": sid})
    assert joined["snapshot"]["view"]["seq"] == 0

    # The pointer is relayed as it comes and never becomes part of the state.
    assert (await presenter.call("pointer", {"viewport": 0, "point": [10.5, -3, 42]}))["ok"]
    move = await surgeon.wait_for("pointer-move")
    assert move == {"by": "u4", "viewport": 0, "point": [10.5, -3, 42]}
    late = await (await connect("oncologist")).call("join", {"session_id": sid})
    assert "pointer" not in repr(late["snapshot"]["view"])


async def test_presenter_passes_it_on_and_the_new_presenter_continues_the_sequence(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, alias, _ = await _board(server, auth, ids, agenda=True)
    chair, presenter, surgeon = await _room(connect, sid, "chair", "radiologist", "surgeon")
    assert (
        await presenter.call("view", {"seq": 7, "patch": {"viewports": {"0": _viewport(alias, 2)}}})
    )["ok"]
    # A specialist who does not present cannot hand it over; the presenter can.
    refused = await surgeon.call("presenter", {"participant": "u6"})
    assert refused["ok"] is False and "only the chair" in refused["error"]["message"]
    assert (await presenter.call("presenter", {"participant": "u6"}))["ok"]
    state = await surgeon.wait_for("state", lambda s: s["presenter"] == "u6")
    assert state["view"]["seq"] == 7
    gone = await presenter.call("view", {"seq": 8, "patch": {"layout": "2x2"}})
    assert gone["ok"] is False and "only the presenter" in gone["error"]["message"]
    assert (await surgeon.call("view", {"seq": 8, "patch": {"layout": "2x2"}}))["ok"]
    await chair.wait_for("view-update", lambda u: u["seq"] == 8 and u["by"] == "u6")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"zoom": 2}, "patch.zoom"),
        (
            {"viewports": {"0": {**_viewport("x", 0), "url": "http://pacs/x"}}},
            "patch.viewports.0.url",
        ),
        ({"viewports": {"4": _viewport("x", 0)}}, "patch.viewports"),
        ({"viewports": {"0": _viewport("x", -1)}}, "patch.viewports.0.index"),
        (
            {"viewports": {"0": {**_viewport("x", 0), "voi": {"center": 40, "width": 0}}}},
            "patch.viewports.0.voi",
        ),
        ({"layout": "3x3"}, "patch.layout"),
        (
            {
                "annotations": [
                    {
                        "id": "a",
                        "tool": "Freehand",
                        "series": "x",
                        "index": 0,
                        "points": [[0, 0, 0], [1, 1, 1]],
                    }
                ]
            },
            "patch.annotations.0.tool",
        ),
        ({}, "patch"),
    ],
)
async def test_malformed_view_patches_are_refused_by_the_schema(
    connect: Any,
    server: TestServer,
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    patch: dict[str, Any],
    field: str,
) -> None:
    sid, _, _ = await _board(server, auth, ids, agenda=True)
    chair, presenter = await _room(connect, sid, "chair", "radiologist")
    reply = await presenter.call("view", {"seq": 1, "patch": patch})
    assert reply["ok"] is False and reply["error"]["field"].startswith(field), reply
    await asyncio.sleep(0.05)
    assert chair.seen("view-update") == []


async def test_view_naming_images_that_do_not_exist_is_refused_and_changes_nothing(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, alias, count = await _board(server, auth, ids, agenda=False)
    chair, presenter = await _room(connect, sid, "chair", "radiologist")
    # The case is not on this session's agenda yet: its series cannot be shown.
    off = await presenter.call(
        "view", {"seq": 1, "patch": {"viewports": {"0": _viewport(alias, 0)}}}
    )
    assert off["ok"] is False and off["error"]["field"] == "patch.viewports.0.series"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url(f"/api/sessions/{sid}/agenda"),
            headers=auth["coordinator"],
            json={"case_id": ids["ready_case"], "timebox_minutes": 15},
        ) as resp:
            assert resp.status == 201
    assert (
        await presenter.call("view", {"seq": 1, "patch": {"viewports": {"0": _viewport(alias, 0)}}})
    )["ok"]

    bad = [
        ({"viewports": {"0": _viewport(alias, count)}}, "patch.viewports.0.index"),
        ({"viewports": {"1": _viewport("no-such-series", 0)}}, "patch.viewports.1.series"),
        (
            {
                "annotations": [
                    {
                        "id": "a",
                        "tool": "Length",
                        "series": alias,
                        "index": count + 5,
                        "points": [[0, 0, 0], [1, 1, 1]],
                    }
                ]
            },
            "patch.annotations.0.index",
        ),
        ({"layout": "1x2", "active": 3}, "patch.active"),
    ]
    for patch, field in bad:
        reply = await presenter.call("view", {"seq": 2, "patch": patch})
        assert reply["ok"] is False and reply["error"]["field"] == field, (patch, reply)
    snapshot = (await (await connect("surgeon")).call("join", {"session_id": sid}))["snapshot"]
    assert snapshot["view"]["seq"] == 1
    assert snapshot["view"]["state"]["layout"] == "1x1"
    assert [v["index"] for v in snapshot["view"]["state"]["viewports"]] == [0]
    await asyncio.sleep(0.05)
    assert [u["seq"] for u in chair.seen("view-update")] == [1]


async def test_view_flood_is_rate_limited_and_others_are_unaffected(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    sid, alias, _ = await _board(server, auth, ids, agenda=True)
    chair, presenter = await _room(connect, sid, "chair", "radiologist")
    replies = await asyncio.gather(
        *[
            presenter.call(
                "view",
                {"seq": n, "patch": {"viewports": {"0": _viewport(alias, 0, zoom=1 + n / 1000)}}},
            )
            for n in range(1, 601)
        ]
    )
    limited = [r for r in replies if not r["ok"]]
    assert limited and all("rate limited" in r["error"]["message"] for r in limited)
    # The allowance covers a presenter at 60 Hz with the pointer: hundreds went through.
    assert len(replies) - len(limited) >= 260
    assert (await chair.call("chat", {"text": "still here"}))["ok"] is True
    # Other events of the presenter have their own allowance.
    assert (await presenter.call("hand", {"raised": True}))["ok"] is True


async def test_patches_sent_back_to_back_are_applied_in_order_while_a_series_is_looked_up(
    connect: Any, server: TestServer, auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    """The first patch names a series the server has not counted yet (a database read); the
    second must not overtake it and get it dropped as stale."""
    sid, alias, _ = await _board(server, auth, ids, agenda=True)
    chair, presenter = await _room(connect, sid, "chair", "radiologist")
    first = {"seq": 1, "patch": {"layout": "1x2", "viewports": {"0": _viewport(alias, 1)}}}
    # Valid on its own, naming no series: nothing to wait for.
    second = {"seq": 2, "patch": {"viewports": {"1": _viewport(None, 0, zoom=3)}}}
    replies = await asyncio.gather(presenter.call("view", first), presenter.call("view", second))
    assert replies == [{"ok": True, "seq": 1}, {"ok": True, "seq": 2}]
    await chair.wait_for("view-update", lambda u: u["seq"] == 2)
    assert [u["seq"] for u in chair.seen("view-update")] == [1, 2]
    late = await (await connect("surgeon")).call("join", {"session_id": sid})
    state = late["snapshot"]["view"]["state"]
    assert (state["layout"], state["viewports"][0]["index"]) == ("1x2", 1)
    assert state["viewports"][1]["presentation"]["zoom"] == 3
