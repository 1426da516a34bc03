"""REST: note templates, a case's consensus note, its agreed plan (signed versions, export,
amendments) and the follow-up of its recommendations."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlmodel import select

from ..access import case_for, is_external, membership
from ..errors import Invalid, NotFound
from ..models import Board, Case, Note
from ..notes.channel import WRITERS
from ..notes.plan import discussion_of
from .queries import SignedPlanQuery
from .responses import FinalizeOut, NoteOut, OpenObject, PlanOut, StatusOut, TemplateList
from .roles import CHAIRS, EVERYONE, MANAGERS
from .routing import Call, RouteTable

routes = RouteTable()
_TAG = "notes"


class AmendmentIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


class FollowupIn(BaseModel):
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=32)
    comment: str | None = Field(default=None, max_length=2000)


@routes.add(
    "GET",
    "/api/templates",
    roles=EVERYONE,
    summary="List note templates",
    tag=_TAG,
    response=TemplateList,
)
async def list_templates(call: Call) -> dict[str, Any]:
    return {"items": call.services.notes.templates.summary()}


@routes.add(
    "GET",
    "/api/templates/{name}",
    roles=EVERYONE,
    summary="Get a note template",
    tag=_TAG,
    response=OpenObject,
)
async def get_template(call: Call) -> dict[str, Any]:
    return call.services.notes.templates.bundle(call.request.match_info["name"])


async def _case_board(call: Call) -> tuple[Case, Board]:
    case = await case_for(call.session, call.me, call.int_param("case_id"))
    board = await call.session.get(Board, case.board_id)
    assert board is not None
    return case, board


@routes.add(
    "GET",
    "/api/cases/{case_id}/note",
    roles=EVERYONE,
    summary="Get a case's note",
    tag=_TAG,
    response=NoteOut,
)
async def get_note(call: Call) -> dict[str, Any]:
    case, board = await _case_board(call)
    assert board.id is not None and call.me.id is not None
    member = await membership(call.session, board.id, call.me.id)
    note = await call.services.notes.load(case, board)
    row = (await call.session.exec(select(Note).where(Note.case_id == case.id))).first()
    reason_enc = row.amendment_reason_enc if row is not None else None
    discussion = await discussion_of(call.session, case, board)
    chairs = member is not None and member.role == "chair"
    writes = member is not None and member.role in WRITERS
    return {
        "case_id": case.id,
        "template": note.template,
        "status": note.status,
        "readonly": note.readonly or not writes,
        "can_edit": writes and not note.readonly,
        "can_finalize": chairs and note.status != "finalized",
        "can_amend": chairs and note.status == "finalized",
        "content": note.document.content(),
        "attendance": discussion.attendance,
        "quorum": discussion.quorum,
        "session": discussion.session_json(board),
        "amendment_reason": call.services.cipher.open("amendment_reason", reason_enc)
        if reason_enc
        else None,
    }


@routes.add(
    "POST",
    "/api/cases/{case_id}/note/finalize",
    roles=CHAIRS,
    summary="Finalize a case's note as its agreed plan",
    tag=_TAG,
    # Its own units of work: it waits for note updates in flight to be stored first.
    writes=False,
    response=FinalizeOut,
    answers=(409, 422),
)
async def post_finalize(call: Call) -> dict[str, Any]:
    plan = await call.services.plans.finalize(call.me, call.int_param("case_id"))
    return {"version": plan.version, "hash": plan.hash, "kid": plan.kid}


@routes.add(
    "POST",
    "/api/cases/{case_id}/plan/amendments",
    roles=CHAIRS,
    summary="Open an amendment of a case's agreed plan",
    body=AmendmentIn,
    tag=_TAG,
    writes=False,
    response=StatusOut,
    answers=(409,),
)
async def post_amendment(call: Call) -> dict[str, Any]:
    body: AmendmentIn = call.body
    await call.services.plans.open_amendment(call.me, call.int_param("case_id"), body.reason)
    return {"status": "amending"}


async def _plan_json(call: Call, case: Case) -> dict[str, Any]:
    assert case.id is not None
    plans = call.services.plans
    versions = await plans.versions(call.session, case.id)
    if not versions:
        raise NotFound(f"case {case.number} has no agreed plan yet")
    problems = [f"version {v['payload']['version']}: {p}" for v in versions for p in plans.check(v)]
    return {
        "versions": [
            {
                "version": v["payload"]["version"],
                "hash": v["hash"],
                "previous_hash": (v["payload"]["previous"] or {}).get("hash"),
                "amendment_reason": v["payload"]["amendment_reason"],
                "finalized_at": v["payload"]["finalized_at"],
                "finalized_by": v["payload"]["finalized_by"],
                "kid": v["signature"]["kid"],
            }
            for v in versions
        ],
        "current": versions[-1]["payload"],
        "followup": await plans.followups(call.session, case.id),
        "state": case.state,
        "verified": not problems,
        "problems": problems,
    }


@routes.add(
    "GET",
    "/api/cases/{case_id}/plan",
    roles=EVERYONE,
    summary="Get a case's agreed plan",
    tag=_TAG,
    response=PlanOut,
)
async def get_plan(call: Call) -> dict[str, Any]:
    case, _ = await _case_board(call)
    return await _plan_json(call, case)


@routes.add(
    "GET",
    "/api/cases/{case_id}/plan/signed",
    roles=EVERYONE,
    summary="Export a case's signed agreed plan",
    tag=_TAG,
    writes=True,
    same_site=True,
    response=OpenObject,
    query=SignedPlanQuery,
)
async def get_signed_plan(call: Call) -> web.Response:
    case, _ = await _case_board(call)
    assert case.id is not None
    versions = await call.services.plans.versions(call.session, case.id)
    if not versions:
        raise NotFound(f"case {case.number} has no agreed plan yet")
    # The page that shows a plan fetches it to check its signature in the browser: that access
    # is audited as a view; anything else (a download) as an export.
    purpose = call.request.query.get("purpose", "export")
    if purpose not in ("view", "export"):
        raise Invalid.on("purpose", f"unknown purpose {purpose!r} (use view or export)")
    await call.audit(
        action=f"plan.{purpose}",
        target_type="case",
        target_id=case.id,
        detail={
            "format": "json",
            "versions": len(versions),
            "audience": "external" if is_external(call.me, case) else "home",
            "via": "api",
        },
    )
    return web.Response(
        body=call.services.plans.export(case, versions),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{case.number}-plan.json"'},
    )


@routes.add(
    "PUT",
    "/api/cases/{case_id}/plan/followup/{rank}",
    roles=MANAGERS,
    summary="Record the follow-up of a recommendation",
    body=FollowupIn,
    tag=_TAG,
    response=PlanOut,
    answers=(409,),
)
async def put_followup(call: Call) -> dict[str, Any]:
    body: FollowupIn = call.body
    case, _ = await _case_board(call)
    await call.services.plans.follow_up(
        call.session, call.me, case, call.int_param("rank"), body.status, body.reason, body.comment
    )
    return await _plan_json(call, case)
