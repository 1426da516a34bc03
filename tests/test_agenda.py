"""Agenda: ready cases of the session's board, ordered and time-boxed."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func
from sqlmodel import select

from server.models import AgendaItem
from server.services import SERVICES


async def _next_session(
    client: TestClient[Any, Any], headers: dict[str, str], board_id: int
) -> int:
    listed = await (await client.get(f"/api/boards/{board_id}/sessions", headers=headers)).json()
    return int(listed["items"][0]["id"])


async def _agenda_count(client: TestClient[Any, Any], sid: int) -> int:
    """Items on session ``sid``'s agenda (the demo's past session has one of its own)."""
    query = select(func.count()).select_from(AgendaItem).where(AgendaItem.session_id == sid)
    async with client.app[SERVICES].db.read() as session:
        return int((await session.exec(query)).one())


async def _make_ready(client: TestClient[Any, Any], coord: dict[str, str], case_id: int) -> None:
    from aiohttp import FormData

    form = FormData()
    form.add_field(
        "file", b"Pathology: adenocarcinoma", filename="p.txt", content_type="text/plain"
    )
    assert (
        await client.post(f"/api/cases/{case_id}/attachments", data=form, headers=coord)
    ).status == 201
    resp = await client.post(
        f"/api/cases/{case_id}/transitions", json={"to": "ready"}, headers=coord
    )
    assert resp.status == 200, await resp.text()


async def test_agenda_orders_cases_and_plans_their_start_times(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    coord = auth["coordinator"]
    sid = await _next_session(client, coord, ids["board_id"])
    await _make_ready(client, coord, ids["preparing_case"])
    a = await client.post(
        f"/api/sessions/{sid}/agenda?tz=Asia/Shanghai",
        headers=coord,
        json={"case_id": ids["ready_case"], "timebox_minutes": 20},
    )
    assert a.status == 201, await a.text()
    first = await a.json()
    assert first["planned_start"]["board"][11:16] == "07:30"
    b = await client.post(
        f"/api/sessions/{sid}/agenda",
        headers=coord,
        json={"case_id": ids["preparing_case"], "timebox_minutes": 15},
    )
    second = await b.json()
    assert second["planned_start"]["board"][11:16] == "07:50"

    order = await client.put(
        f"/api/sessions/{sid}/agenda/order",
        headers=coord,
        json={"item_ids": [second["id"], first["id"]]},
    )
    assert order.status == 200
    items = (await order.json())["items"]
    assert [i["case_id"] for i in items] == [ids["preparing_case"], ids["ready_case"]]
    assert [i["planned_start"]["board"][11:16] for i in items] == ["07:30", "07:45"]

    lane = await client.patch(
        f"/api/agenda-items/{second['id']}", headers=coord, json={"lane": "standard_of_care"}
    )
    assert (await lane.json())["planned_start"] is None
    agenda = await (
        await client.get(f"/api/sessions/{sid}/agenda", headers=auth["external"])
    ).json()
    assert agenda["total_minutes"] == 20
    assert agenda["items"][1]["planned_start"]["board"][11:16] == "07:30"
    session = await (await client.get(f"/api/sessions/{sid}", headers=coord)).json()
    assert session["agenda_count"] == 2

    assert (await client.delete(f"/api/agenda-items/{second['id']}", headers=coord)).status == 204
    left = await (await client.get(f"/api/sessions/{sid}/agenda", headers=coord)).json()
    assert [(i["case_id"], i["position"]) for i in left["items"]] == [(ids["ready_case"], 0)]


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"case_id": "preparing_case", "timebox_minutes": 10}, "case_id", 422),
        ({"case_id": "requested_case", "timebox_minutes": 10}, "case_id", 422),
        ({"case_id": 9999, "timebox_minutes": 10}, "case_id", 422),
        ({"case_id": "ready_case", "timebox_minutes": 0}, "timebox_minutes", 422),
        ({"case_id": "ready_case", "timebox_minutes": -5}, "timebox_minutes", 422),
        ({"case_id": "ready_case", "timebox_minutes": "ten"}, "timebox_minutes", 422),
        ({"case_id": "ready_case", "timebox_minutes": 10, "lane": "fast"}, "lane", 422),
    ],
)
async def test_bad_agenda_item_is_refused_and_nothing_stored(
    client: TestClient[Any, Any],
    auth: dict[str, dict[str, str]],
    ids: dict[str, int],
    body: dict[str, Any],
    field: str,
    status: int,
) -> None:
    coord = auth["coordinator"]
    sid = await _next_session(client, coord, ids["board_id"])
    if isinstance(body["case_id"], str):
        body = {**body, "case_id": ids[body["case_id"]]}
    resp = await client.post(f"/api/sessions/{sid}/agenda", json=body, headers=coord)
    assert resp.status == status, await resp.text()
    problem = await resp.json()
    assert problem["errors"][0]["field"] == field
    assert await _agenda_count(client, sid) == 0


async def test_case_of_another_board_cannot_join_the_agenda(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    coord = auth["coordinator"]
    other = await client.post(
        "/api/boards",
        headers=coord,
        json={
            "name": "Colorectal MDT",
            "tumor_site": "colorectal",
            "timezone": "Asia/Shanghai",
            "rrule": "FREQ=WEEKLY;BYDAY=TH",
            "start_time": "16:00",
            "duration_minutes": 60,
        },
    )
    other_board = await other.json()
    sid = other_board["next_session"]["id"]
    resp = await client.post(
        f"/api/sessions/{sid}/agenda",
        headers=coord,
        json={"case_id": ids["ready_case"], "timebox_minutes": 10},
    )
    assert resp.status == 422
    assert "another board" in (await resp.json())["errors"][0]["message"]
    assert await _agenda_count(client, sid) == 0


async def test_reorder_must_name_every_item_once(
    client: TestClient[Any, Any], auth: dict[str, dict[str, str]], ids: dict[str, int]
) -> None:
    coord = auth["coordinator"]
    sid = await _next_session(client, coord, ids["board_id"])
    item = await (
        await client.post(
            f"/api/sessions/{sid}/agenda",
            headers=coord,
            json={"case_id": ids["ready_case"], "timebox_minutes": 10},
        )
    ).json()
    for bad in ([], [item["id"], item["id"]], [item["id"], 4242]):
        resp = await client.put(
            f"/api/sessions/{sid}/agenda/order", headers=coord, json={"item_ids": bad}
        )
        assert resp.status == 422
        assert (await resp.json())["errors"][0]["field"] == "item_ids"
    dup = await client.post(
        f"/api/sessions/{sid}/agenda",
        headers=coord,
        json={"case_id": ids["ready_case"], "timebox_minutes": 10},
    )
    assert dup.status == 409
    assert await _agenda_count(client, sid) == 1
