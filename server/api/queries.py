"""The query parameters of REST routes, declared on the routes for the OpenAPI document.

The handlers read and check the parameters themselves (each refusal names the parameter);
these models say which exist, which are required and what values they take.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "CaseQuery",
    "ExportQuery",
    "MetricsQuery",
    "QidoStudyQuery",
    "SessionRangeQuery",
    "SignedPlanQuery",
    "ViewerQuery",
]

_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class ViewerQuery(BaseModel):
    """Times are shown in the board's zone and in the viewer's: by default the user's own."""

    tz: str | None = Field(default=None, description="IANA time zone of the viewer")


class SessionRangeQuery(ViewerQuery):
    from_: str | None = Field(
        default=None, alias="from", pattern=_DAY, description="first day (default today)"
    )
    to: str | None = Field(default=None, pattern=_DAY, description="last day")


class CaseQuery(BaseModel):
    board_id: str | None = Field(default=None, pattern=r"^[0-9]+$")
    state: (
        Literal[
            "requested",
            "accepted",
            "rejected",
            "in_preparation",
            "ready",
            "discussed",
            "finalized",
            "closed",
        ]
        | None
    ) = None


class SignedPlanQuery(BaseModel):
    purpose: Literal["view", "export"] = Field(
        default="export", description="audited as plan.view or plan.export"
    )


class ExportQuery(BaseModel):
    format: Literal["pdf", "fhir", "hl7", "json"]
    language: Literal["both", "en", "zh-CN"] = "both"
    audience: Literal["home", "external"] | None = None


class MetricsQuery(ViewerQuery):
    from_: str | None = Field(default=None, alias="from", pattern=_DAY)
    to: str | None = Field(default=None, pattern=_DAY)
    board_id: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,8}$")


class QidoStudyQuery(BaseModel):
    """QIDO-RS study search keys, by keyword or tag (PS3.18 8.3.4)."""

    StudyInstanceUID: str | None = None
    study_instance_uid_tag: str | None = Field(default=None, alias="0020000D")
    StudyDate: str | None = Field(default=None, description="YYYYMMDD or a range of them")
    study_date_tag: str | None = Field(default=None, alias="00080020")
    ModalitiesInStudy: str | None = None
    modalities_tag: str | None = Field(default=None, alias="00080061")
    PatientID: str | None = None
    patient_id_tag: str | None = Field(default=None, alias="00100020")
    limit: str | None = Field(default=None, pattern=r"^[0-9]+$")
    offset: str | None = Field(default=None, pattern=r"^[0-9]+$")
    includefield: str | None = None
    fuzzymatching: str | None = None
