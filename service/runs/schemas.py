"""Request and response bodies of runs and results."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from service.api.bodies import RequestBody

__all__ = ["Decision", "RunCreate", "RunOut"]


class RunCreate(RequestBody):
    frequent_threshold: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="contacts that make a frequent user: one of the project's menu "
        "(default: the menu's first)",
    )
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] | Literal["balanced"] | None = Field(
        None,
        description="match probability threshold, or 'balanced': one of the project's menu "
        "(default: the menu's first)",
    )
    period: str | None = Field(
        None,
        max_length=20,
        description="the period whose submissions to link, e.g. 2026-Q1 (default: the "
        "project's one period)",
    )


class Decision(RequestBody):
    decision: Literal["approve", "refuse"] = Field(description="release to the analyst, or not")
    reason: str = Field("", max_length=2000, description="recorded in the audit log")


class RunOut(BaseModel):
    id: str
    project_id: str
    requested_by: str
    status: str = Field(
        description="queued, running, awaiting_approval (output checking), done, refused or failed"
    )
    stage: str
    progress: float
    message: str | None
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    period: str | None = Field(None, description="the period linked; null = the project's one")
