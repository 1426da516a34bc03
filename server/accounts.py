"""Accounts: institutions and users, and logging in."""

from __future__ import annotations

import re

from sqlmodel import select

from .db import AsyncSession
from .errors import Conflict, Invalid, Unauthenticated
from .models import Institution, User, utcnow
from .scheduling import zone
from .security import Role
from .services import Services

__all__ = ["SPECIALTIES", "check_email", "create_user", "create_institution", "login", "user_json"]

SPECIALTIES = (
    "surgery",
    "medical_oncology",
    "radiation_oncology",
    "radiology",
    "pathology",
    "nuclear_medicine",
    "nursing",
    "palliative_care",
    "genetics",
    "other",
)
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_email(email: str, field: str = "email") -> None:
    """An address is optional, but one that is given must look like one."""
    if email and not _EMAIL.match(email):
        raise Invalid.on(field, f"{email!r} is not an e-mail address")


MIN_PASSWORD = 8


async def create_institution(
    session: AsyncSession, *, code: str, name: str, timezone: str
) -> Institution:
    zone(timezone)
    found = (await session.exec(select(Institution).where(Institution.code == code))).first()
    if found:
        raise Conflict.on("code", f"institution code {code!r} is taken")
    institution = Institution(code=code, name=name, timezone=timezone)
    session.add(institution)
    await session.flush()
    return institution


async def create_user(
    session: AsyncSession,
    services: Services,
    *,
    username: str,
    password: str,
    display_name: str,
    role: str,
    institution_id: int,
    specialty: str | None = None,
    email: str = "",
    timezone: str | None = None,
) -> User:
    if not _USERNAME.match(username):
        raise Invalid.on("username", "use 2–64 lowercase letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD:
        raise Invalid.on("password", f"must be at least {MIN_PASSWORD} characters")
    check_email(email)
    if role not in Role.__members__.values():
        raise Invalid.on("role", f"unknown role {role!r}")
    if specialty is not None and specialty not in SPECIALTIES:
        raise Invalid.on("specialty", f"unknown specialty {specialty!r}")
    institution = await session.get(Institution, institution_id)
    if institution is None:
        raise Invalid.on("institution_id", f"no institution {institution_id}")
    if timezone:
        zone(timezone)
    taken = (await session.exec(select(User).where(User.username == username))).first()
    if taken:
        raise Conflict.on("username", f"username {username!r} is taken")
    user = User(
        username=username,
        display_name=display_name,
        email=email,
        password_hash=await services.passwords.hash(password),
        role=role,
        specialty=specialty,
        institution_id=institution_id,
        timezone=timezone or institution.timezone,
        created_at=utcnow(),
    )
    session.add(user)
    await session.flush()
    return user


async def login(session: AsyncSession, services: Services, username: str, password: str) -> User:
    user = (await session.exec(select(User).where(User.username == username))).first()
    ok = await services.passwords.verify(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        raise Unauthenticated("wrong username or password")
    return user


async def user_json(session: AsyncSession, user: User) -> dict[str, object]:
    institution = await session.get(Institution, user.institution_id)
    assert institution is not None
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "role": user.role,
        "specialty": user.specialty,
        "institution": {
            "id": institution.id,
            "code": institution.code,
            "name": institution.name,
            "timezone": institution.timezone,
        },
        "timezone": user.timezone,
        "locale": user.locale,
    }
