"""REST: institutions and users."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlmodel import col, select

from ..accounts import create_institution, create_user, user_json
from ..models import Institution, User
from .responses import InstitutionList, InstitutionOut, UserList, UserOut
from .roles import ADMINS, EVERYONE, MANAGERS
from .routing import Call, RouteTable

routes = RouteTable()


class InstitutionIn(BaseModel):
    code: str = Field(min_length=2, max_length=16, pattern=r"^[A-Z0-9]+$")
    name: str = Field(min_length=1, max_length=200)
    timezone: str


class UserIn(BaseModel):
    username: str
    password: str
    display_name: str = Field(min_length=1, max_length=200)
    role: str
    institution_id: int
    specialty: str | None = None
    email: str = Field(default="", max_length=200)
    timezone: str | None = None


def _institution_json(i: Institution) -> dict[str, object]:
    return {"id": i.id, "code": i.code, "name": i.name, "timezone": i.timezone}


@routes.add(
    "GET",
    "/api/institutions",
    roles=EVERYONE,
    summary="List institutions",
    tag="people",
    response=InstitutionList,
)
async def list_institutions(call: Call) -> dict[str, object]:
    rows = await call.session.exec(select(Institution).order_by(col(Institution.id)))
    return {"items": [_institution_json(i) for i in rows]}


@routes.add(
    "POST",
    "/api/institutions",
    roles=ADMINS,
    summary="Add an institution",
    body=InstitutionIn,
    status=201,
    tag="people",
    response=InstitutionOut,
    answers=(409,),
)
async def post_institution(call: Call) -> dict[str, object]:
    b: InstitutionIn = call.body
    inst = await create_institution(call.session, code=b.code, name=b.name, timezone=b.timezone)
    await call.audit(
        action="institution.create",
        target_type="institution",
        target_id=inst.id,
    )
    return _institution_json(inst)


@routes.add(
    "GET", "/api/users", roles=MANAGERS, summary="List users", tag="people", response=UserList
)
async def list_users(call: Call) -> dict[str, object]:
    rows = list(await call.session.exec(select(User).order_by(col(User.id))))
    return {"items": [await user_json(call.session, u) for u in rows]}


@routes.add(
    "POST",
    "/api/users",
    roles=ADMINS,
    summary="Add a user",
    body=UserIn,
    status=201,
    tag="people",
    response=UserOut,
    answers=(409,),
)
async def post_user(call: Call) -> dict[str, object]:
    b: UserIn = call.body
    user = await create_user(call.session, call.services, **b.model_dump())
    await call.audit(
        action="user.create",
        target_type="user",
        target_id=user.id,
        detail={"role": user.role},
    )
    return await user_json(call.session, user)
