"""Live co-editing over the /board socket.io namespace: real socket.io clients, real pycrdt
replicas, the real app. Every refused update changes nothing, for anyone."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pycrdt
from sqlmodel import func, select

from server.models import NoteUpdate, User
from server.notes.document import update_writing
from server.services import Services

from ..peers import Peer
from .conftest import Replica

Connect = Callable[[str], Awaitable[Peer]]


async def _content(served: Services, case_id: int) -> dict[str, Any]:
    note = served.notes.opened(case_id)
    assert note is not None
    return note.document.content()


async def _stored(served: Services) -> int:
    async with served.db.read() as db:
        return int((await db.exec(select(func.count()).select_from(NoteUpdate))).one())


async def test_two_specialists_see_each_others_edits(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    case_id = ids["ready_case"]
    a = Replica(await connect("radiologist"), case_id)
    b = Replica(await connect("surgeon"), case_id)
    opened = await a.open()
    await b.open()
    assert (
        opened["template"] == "thoracic" and opened["status"] == "draft" and not opened["readonly"]
    )

    ack = await a.edit(lambda n: n["rationale"].insert(0, "EGFR exon 19: osimertinib first."))
    assert ack == {"ok": True, "case_id": case_id}
    await b.peer.wait_for("note-updated", lambda d: d["case_id"] == case_id)
    b.catch_up()
    assert str(b.note["rationale"]) == "EGFR exon 19: osimertinib first."
    await b.edit(lambda n: n.__setitem__("intent", "373808002"))
    await a.peer.wait_for("note-updated")
    a.catch_up()
    assert a.note["intent"] == "373808002"
    content = await _content(served, case_id)
    assert content["rationale"] == "EGFR exon 19: osimertinib first."
    assert content["intent"] == "373808002"
    # Nobody hears their own update back.
    assert not a.peer.seen("note-updated")[1:] and len(b.peer.seen("note-updated")) == 1


async def test_two_people_typing_in_one_text_field_both_keep_their_words(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    case_id = ids["ready_case"]
    a, b = await _pair(connect, case_id)

    async def type_into(r: Replica, words: str) -> None:
        for ch in words:
            await r.edit(lambda n, c=ch: n["rationale"].insert(len(str(n["rationale"])), c))

    # Concurrently, each from its own replica's view (neither has applied the other's edits).
    await asyncio.gather(type_into(a, "resectable"), type_into(b, "N2 bulky"))
    await asyncio.sleep(0.2)
    a.catch_up()
    b.catch_up()
    server = (await _content(served, case_id))["rationale"]
    assert str(a.note["rationale"]) == str(b.note["rationale"]) == server
    assert sorted(server) == sorted("resectable" + "N2 bulky")
    # Character-wise: each person's characters keep their own order.
    assert _subsequence("resectable", server) and _subsequence("N2 bulky", server)


def _subsequence(word: str, text: str) -> bool:
    it = iter(text)
    return all(ch in it for ch in word)


async def test_a_resent_update_after_reconnect_is_stored_once_in_effect(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    case_id = ids["ready_case"]
    a = Replica(await connect("radiologist"), case_id)
    await a.open()
    await a.edit(lambda n: n["rationale"].insert(0, "once"))
    await a.peer.client.disconnect()
    # The client did not see the acknowledgement (say): it re-opens and re-sends.
    again = Replica(await connect("radiologist"), case_id, doc=a.doc)
    await again.open()
    assert (await again.send(base64.b64decode(a.acked[0])))["ok"]
    assert (await _content(served, case_id))["rationale"] == "once"


async def test_focus_is_shown_to_others_and_cleared_on_disconnect(
    connect: Connect, ids: dict[str, int]
) -> None:
    case_id = ids["ready_case"]
    a = Replica(await connect("radiologist"), case_id)
    b = Replica(await connect("surgeon"), case_id)
    await a.open()
    await b.open()
    assert (await a.peer.call("note-focus", {"case_id": case_id, "field": "staging.stage_group"}))[
        "ok"
    ]
    seen = await b.peer.wait_for(
        "note-presence",
        lambda d: any(p["field"] == "staging.stage_group" for p in d["participants"]),
    )
    assert {p["name"] for p in seen["participants"]} == {"Dr. Chen Jie", "Dr. Zhao Lei"}
    await a.peer.client.disconnect()
    await b.peer.wait_for(
        "note-presence", lambda d: [p["name"] for p in d["participants"]] == ["Dr. Zhao Lei"]
    )


# -- bad input: a clear error naming the field, nothing stored, nobody else affected ----------


async def _refused(
    r: Replica, other: Replica, served: Services, update: bytes | str, field: str
) -> str:
    before_rows = await _stored(served)
    before = await _content(served, r.case_id)
    encoded = update if isinstance(update, str) else base64.b64encode(update).decode()
    ack = await r.peer.call("note-update", {"case_id": r.case_id, "update": encoded})
    assert ack["ok"] is False, ack
    assert ack["error"]["field"] == field, ack
    assert await _stored(served) == before_rows
    assert await _content(served, r.case_id) == before
    await asyncio.sleep(0.1)
    assert not other.peer.seen("note-updated")
    return str(ack["error"]["message"])


async def _pair(connect: Connect, case_id: int) -> tuple[Replica, Replica]:
    a = Replica(await connect("radiologist"), case_id)
    b = Replica(await connect("surgeon"), case_id)
    await a.open()
    await b.open()
    return a, b


async def test_a_malformed_update_is_refused(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    a, b = await _pair(connect, ids["ready_case"])
    message = await _refused(a, b, served, b"\x01\x02garbage-not-yjs", "update")
    assert "not a Yjs update" in message
    assert "base64" in await _refused(a, b, served, "bm90IGJhc2U2NA!!", "update")
    # The note still takes good edits afterwards.
    assert (await a.edit(lambda n: n["rationale"].insert(0, "ok")))["ok"]


async def test_an_oversized_update_is_refused_before_it_is_read(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    a, b = await _pair(connect, ids["ready_case"])
    big = base64.b64encode(os.urandom(140 * 1024)).decode()
    message = await _refused(a, b, served, big, "update")
    assert "longer than 174764 characters" in message


async def test_an_update_made_for_another_cases_note_is_refused(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    mine, other_case = ids["ready_case"], ids["preparing_case"]
    a, b = await _pair(connect, mine)
    # An edit made on the other case's note...
    elsewhere = Replica(await connect("pathologist"), other_case)
    await elsewhere.open()
    before = elsewhere.doc.get_state()
    with elsewhere.doc.transaction():
        elsewhere.note["rationale"].insert(0, "about another patient")
    foreign = elsewhere.doc.get_update(before)
    # ...sent as if for this one, and for a note this connection never opened.
    message = await _refused(a, b, served, foreign, "update")
    assert "does not fit this note" in message
    ack = await a.peer.call(
        "note-update", {"case_id": other_case, "update": base64.b64encode(foreign).decode()}
    )
    assert ack["ok"] is False and ack["error"]["field"] == "case_id"
    assert "open the note" in ack["error"]["message"]
    assert "rationale" not in await _content(served, other_case)


async def test_an_update_that_breaks_the_template_shape_is_refused(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    a, b = await _pair(connect, ids["ready_case"])
    replica = pycrdt.Doc()
    replica.apply_update(a.doc.get_update())
    note = replica.get("note", type=pycrdt.Map)
    before = replica.get_state()
    note["rationale"] = "plain string instead of text"
    assert "rationale: must stay text" in await _refused(
        a, b, served, replica.get_update(before), "update"
    )
    replica = pycrdt.Doc()
    replica.apply_update(a.doc.get_update())
    before = replica.get_state()
    replica.get("note", type=pycrdt.Map)["favourite_colour"] = "blue"
    assert "favourite_colour: is not a field" in await _refused(
        a, b, served, replica.get_update(before), "update"
    )
    # The template allows 20 recommendations. People adding at once may overshoot while
    # editing (finalize holds to 20), but a list twice that long is refused there and then:
    # every later edit would otherwise walk an ever longer list.
    many = [{"type": "further_imaging", "detail": f"scan {i}"} for i in range(41)]
    shape = served.notes.templates.shape("thoracic")
    grown = update_writing(a.doc.get_update(), shape, {"recommendations": many})
    message = await _refused(a, b, served, grown, "update")
    assert "recommendations: holds more than 40 entries" in message
    fits = update_writing(a.doc.get_update(), shape, {"recommendations": many[:21]})
    assert (await a.send(fits))["ok"]


async def test_observers_read_but_do_not_write(
    connect: Connect, ids: dict[str, int], served: Services
) -> None:
    case_id = ids["ready_case"]
    watcher = Replica(await connect("observer"), case_id)
    opened = await watcher.open()
    assert opened["readonly"] is True
    writer = Replica(await connect("radiologist"), case_id)
    await writer.open()
    ack = await watcher.edit(lambda n: n["rationale"].insert(0, "nurse note"))
    assert ack["ok"] is False and "may read but not write" in ack["error"]["message"]
    assert "rationale" not in await _content(served, case_id)


async def test_non_members_cannot_open_a_note(connect: Connect, ids: dict[str, int]) -> None:
    records = await connect("records")  # same institution, not a board member: may read
    ack = await records.call("note-open", {"case_id": ids["ready_case"]})
    assert ack["ok"] is True and ack["readonly"] is True
    ack = await records.call("note-open", {"case_id": 999999})
    assert ack["ok"] is False and "no case 999999" in ack["error"]["message"]


async def test_a_finalized_note_refuses_edits_and_everyone_is_told(
    connect: Connect, served: Services, discussed: int
) -> None:
    example = json.loads((Path(__file__).parent / "examples" / "thoracic.json").read_text())
    a, b = await _pair(connect, discussed)
    await a.send(
        update_writing(a.doc.get_update(), served.notes.templates.shape("thoracic"), example)
    )
    async with served.db.read() as db:
        chair = (await db.exec(select(User).where(User.username == "chair"))).one()
    await served.plans.finalize(chair, discussed)
    for r in (a, b):
        told = await r.peer.wait_for("note-state", lambda d: d["status"] == "finalized")
        assert told["readonly"] is True and told["case_id"] == discussed
    b.catch_up()
    message = await _refused(
        b, a, served, _edit_update(b, lambda n: n["rationale"].insert(0, "late")), "case_id"
    )
    assert "finalized and read-only" in message and "amendment" in message
    reopened = await Replica(await connect("surgeon"), discussed).open()
    assert reopened["status"] == "finalized" and reopened["readonly"] is True


def _edit_update(r: Replica, change: Any) -> bytes:
    before = r.doc.get_state()
    with r.doc.transaction():
        change(r.note)
    return r.doc.get_update(before)
