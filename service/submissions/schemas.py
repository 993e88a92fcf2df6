"""Response bodies of the submissions API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

__all__ = ["SubmissionOut"]


class SubmissionOut(BaseModel):
    """A receipt: what was received, the enclave's verdict, and which version it is."""

    id: str
    project_id: str
    partner: str
    version: int
    # sizes are the partner's and its DPO's to see, not an analyst's: an exact row count
    # of another partner's extract moves by one with one person (issue 12)
    rows: int | None = Field(
        description="rows declared in the envelope; verified by the enclave (null for analysts)"
    )
    rows_rejected_by_partner: int | None = Field(description="null for analysts")
    bytes: int | None = Field(description="size of the sealed payload (null for analysts)")
    sha256: str = Field(description="SHA-256 of the sealed payload as stored")
    received_at: datetime
    superseded_at: datetime | None
    purged_at: datetime | None
    status: str = Field(description="received, then accepted or rejected by the enclave")
    reason: str | None = Field(
        None, description="why the enclave rejected it (names no value; null for analysts)"
    )
    decided_at: datetime | None = None
    current: bool = Field(False, description="accepted and not superseded: what a run links")
    policy_fingerprint: str | None = None
    period: str | None = Field(None, description="the period it covers; null = the project's one")
