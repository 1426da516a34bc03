"""Accounts: institutions and users, and logging in."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from sqlmodel import select

from .db import AsyncSession
from .errors import Conflict, Invalid, Unauthenticated
from .models import Institution, User, utcnow
from .scheduling import zone
from .security import Role, TokenClaims
from .services import Services

__all__ = [
    "SPECIALTIES",
    "check_email",
    "create_user",
    "create_institution",
    "issue_access",
    "login",
    "logout",
    "token_user",
    "update_user",
    "user_json",
]

# Reads the user record behind a verified token's subject (by default, from the database).
UserLookup = Callable[[int], Awaitable[User | None]]
_USER_ID = re.compile(r"[0-9]{1,18}")

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


def issue_access(services: Services, user: User) -> tuple[str, int]:
    """A signed access token for ``user`` and when it expires (epoch seconds)."""
    return services.tokens.issue(
        "access",
        str(user.id),
        services.settings.token_ttl_seconds,
        role=user.role,
        gen=user.token_generation,
    )


async def token_user(services: Services, token: str, users: UserLookup | None = None) -> User:
    """The active user an access token speaks for; ``Unauthenticated`` when the token is
    invalid, expired, revoked (logged out), or older than the user's last disable, role or
    password change."""
    claims = services.tokens.verify("access", token)
    if not _USER_ID.fullmatch(claims.subject):
        raise Unauthenticated("token is invalid (its subject is not a user id)")
    if not claims.token_id:
        raise Unauthenticated("token is invalid (it has no id); log in again")
    if await services.revocations.revoked(services.db, claims.token_id):
        raise Unauthenticated("token was revoked (logged out); log in again")
    if users is None:
        async with services.db.read() as session:
            user = await session.get(User, int(claims.subject))
    else:
        user = await users(int(claims.subject))
    if user is None or not user.active:
        raise Unauthenticated("token is for a user who no longer exists or is disabled")
    # Tokens signed before generations existed carry none: they belong to generation 0.
    if claims.extra.get("gen", 0) != user.token_generation:
        raise Unauthenticated("token was revoked (role, password or account changed); log in again")
    return user


async def logout(session: AsyncSession, services: Services, token: str) -> TokenClaims | None:
    """Revoke the access token (in ``session``'s unit); None when it is not a valid one."""
    try:
        claims = services.tokens.verify("access", token)
    except Unauthenticated:
        return None
    if not claims.token_id or not _USER_ID.fullmatch(claims.subject):
        return None
    if await session.get(User, int(claims.subject)) is None:
        return None
    await services.revocations.revoke(
        session, jti=claims.token_id, user_id=int(claims.subject), expires_at=claims.expires_at
    )
    return claims


async def update_user(
    session: AsyncSession,
    services: Services,
    user: User,
    *,
    active: bool | None = None,
    role: str | None = None,
    password: str | None = None,
) -> dict[str, object]:
    """Disable or enable ``user``, change their role or password; any of these revokes every
    token they hold. Returns what changed (never the password)."""
    changed: dict[str, object] = {}
    if role is not None and role != user.role:
        if role not in Role.__members__.values():
            raise Invalid.on("role", f"unknown role {role!r}")
        changed["role"] = role
    if password is not None:
        if len(password) < MIN_PASSWORD:
            raise Invalid.on("password", f"must be at least {MIN_PASSWORD} characters")
        user.password_hash = await services.passwords.hash(password)
        changed["password"] = "changed"
    if active is not None and active != user.active:
        changed["active"] = active
    if role is not None and "role" in changed:
        user.role = role
    if "active" in changed:
        user.active = bool(active)
    if changed:
        user.token_generation += 1
        session.add(user)
        await session.flush()
    return changed


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
        "active": user.active,
    }
