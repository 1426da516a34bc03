"""Export fixtures: the demo's signed plan (DEMO-0001) as exporters get it."""

from __future__ import annotations

import pytest

from server.export.gather import plan_record
from server.export.record import PlanRecord
from server.models import Case
from server.services import Services


async def _record(services: Services, case_id: int, external: bool) -> PlanRecord:
    async with services.db.read() as db:
        case = await db.get(Case, case_id)
        assert case is not None
        return await plan_record(db, services, case, external=external)


@pytest.fixture
async def demo_record(services: Services, ids: dict[str, int]) -> PlanRecord:
    """DEMO-0001's agreed plan for the home institution (with the patient)."""
    return await _record(services, ids["plan_case"], external=False)


@pytest.fixture
async def external_record(services: Services, ids: dict[str, int]) -> PlanRecord:
    """The same plan for an external audience (no patient identifiers)."""
    return await _record(services, ids["plan_case"], external=True)
