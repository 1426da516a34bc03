"""Which stored imaging a user may reach: the studies of cases they may read, internal only."""

from __future__ import annotations

from sqlmodel import col, select

from ..access import case_for, is_external, member_board_ids, sees_institution_boards
from ..db import AsyncSession
from ..errors import Forbidden, NotFound
from ..models import Case, DicomInstance, DicomSeries, ImagingStudy, User

__all__ = ["visible_case_ids", "sees_copies", "study_for", "series_for", "instance_for"]


async def visible_case_ids(session: AsyncSession, user: User) -> set[int]:
    """Cases whose imaging ``user`` may see: their institution's (as for cases), and for an
    external member the consented cases of their boards — whose de-identified copies only
    they will get (see ``sees_copies``)."""
    query = select(Case.id).where(Case.home_institution_id == user.institution_id)
    if not sees_institution_boards(user):
        query = query.where(col(Case.board_id).in_(await member_board_ids(session, user)))
    own = {i for i in await session.exec(query) if i is not None}
    external = select(Case.id).where(
        col(Case.board_id).in_(await member_board_ids(session, user)),
        Case.home_institution_id != user.institution_id,
        col(Case.consent_external).is_(True),
    )
    return own | {i for i in await session.exec(external) if i is not None}


def sees_copies(user: User, case: Case) -> bool:
    """External participants see the de-identified copy of a case's imaging, never the
    original; staff of the case's institution see the original."""
    return is_external(user, case)


async def study_for(session: AsyncSession, user: User, study_uid: str) -> ImagingStudy:
    """The study, if ``user`` may see it; 403 (not 404) for a study of someone else's case."""
    study = (
        await session.exec(select(ImagingStudy).where(ImagingStudy.study_instance_uid == study_uid))
    ).first()
    if study is None:
        raise NotFound(f"no study {study_uid}")
    case = await session.get(Case, study.case_id)
    assert case is not None
    await case_for(session, user, study.case_id)
    if study.deidentified != sees_copies(user, case):
        # The other audience's copy: it exists, but is not for this user.
        raise Forbidden(f"study {study_uid} is not available to you")
    return study


async def series_for(
    session: AsyncSession, user: User, study_uid: str, series_uid: str
) -> tuple[ImagingStudy, DicomSeries]:
    study = await study_for(session, user, study_uid)
    series = (
        await session.exec(
            select(DicomSeries).where(
                DicomSeries.study_id == study.id, DicomSeries.series_uid == series_uid
            )
        )
    ).first()
    if series is None:
        raise NotFound(f"no series {series_uid} in study {study_uid}")
    return study, series


async def instance_for(
    session: AsyncSession, user: User, study_uid: str, series_uid: str, sop_uid: str
) -> tuple[DicomSeries, DicomInstance]:
    _, series = await series_for(session, user, study_uid, series_uid)
    instance = (
        await session.exec(
            select(DicomInstance).where(
                DicomInstance.series_id == series.id, DicomInstance.sop_uid == sop_uid
            )
        )
    ).first()
    if instance is None:
        raise NotFound(f"no instance {sop_uid} in series {series_uid}")
    return series, instance
