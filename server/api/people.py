"""REST: institutions and users."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlmodel import col, select

from ..accounts import create_institution, create_user, update_user, user_json
from ..errors import Conflict, NotFound
from ..models import Institution, User
from ..security import Role
from .responses import InstitutionList, InstitutionOut, UserList, UserOut
from .roles import ADMINS, EVERYONE, MANAGERS
from .routing import Call, RouteTable

routes = RouteTable()


class InstitutionIn(BaseModel):
    code: str = Field(min_length=2, max_length=16, pattern=r"^[A-Z0-9]+$")
    name: str = Field(min_length=1, max_length=200)
    timezone: str


class UserChange(BaseModel):
    """What an admin may change of a user; each change revokes the user's tokens."""

    active: bool | None = None
    role: str | None = None
    password: str | None = Field(default=None, max_length=1024)


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
    """Admins see every user; a coordinator, their own institution's."""
    query = select(User).order_by(col(User.id))
    if call.me.role != Role.ADMIN:
        query = query.where(User.institution_id == call.me.institution_id)
    rows = list(await call.session.exec(query))
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


@routes.add(
    "PATCH",
    "/api/users/{user_id}",
    roles=ADMINS,
    summary="Disable, enable, or change a user's role or password",
    body=UserChange,
    tag="people",
    response=UserOut,
    answers=(409,),
)
async def patch_user(call: Call) -> dict[str, object]:
    b: UserChange = call.body
    user = await call.session.get(User, call.int_param("user_id"))
    if user is None:
        raise NotFound(f"no user {call.int_param('user_id')}")
    if user.id == call.me.id and (b.active is False or b.role not in (None, user.role)):
        # The last admin could otherwise lock everyone out of user management.
        field = "active" if b.active is False else "role"
        raise Conflict.on(field, "you may not disable yourself or change your own role")
    changed = await update_user(
        call.session, call.services, user, active=b.active, role=b.role, password=b.password
    )
    if changed:
        await call.audit(
            action="user.update", target_type="user", target_id=user.id, detail=changed
        )
    return await user_json(call.session, user)
