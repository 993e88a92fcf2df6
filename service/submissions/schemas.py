"""Response bodies of the submissions API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

__all__ = ["SubmissionOut"]


class SubmissionOut(BaseModel):
    """A receipt: what was accepted, its checksum, and which version it is."""

    id: str
    project_id: str
    partner: str
    version: int
    rows: int
    rows_rejected_by_partner: int
    bytes: int
    sha256: str
    received_at: datetime
    superseded_at: datetime | None
    purged_at: datetime | None
    status: str
