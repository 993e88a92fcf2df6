"""Request and response bodies of the projects API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from service.api.bodies import RequestBody
from service.projects.rules import RunRules

__all__ = ["MemberAdd", "PolicySet", "ProjectCreate", "ProjectOut"]


class ProjectCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    purpose: str = Field("", max_length=5000, description="why the linkage is done")
    legal_basis: str = Field("", max_length=2000, description="e.g. UK GDPR Art 6(1)(e), 9(2)(h)")
    agreement: str = Field("", max_length=500, description="data-sharing agreement reference")
    spec: dict[str, Any] = Field(description="the linkage spec (see examples/spec-uk.json)")
    disclosure: dict[str, Any] | None = Field(
        None, description="disclosure policy overriding the spec's (same shape)"
    )
    retention_days: int = Field(365, ge=1, le=3650, description="sealed extracts kept this long")
    members: list[str] = Field(default_factory=list, description="principal names")
    key_check_value: str | None = Field(
        None, pattern=r"^[0-9a-f]{16}$", description="else taken from the first submission"
    )
    run_rules: RunRules | None = Field(
        None, description="parameter menu, minimum extract size, rate limits, output checking"
    )
    period_scheme: Literal["quarterly", "monthly", "yearly"] | None = Field(
        None, description="how submissions name their period (2026-Q1, 2026-03, 2026); "
        "null: any short label, or none (one period)",
    )  # fmt: skip


class PolicySet(RequestBody):
    disclosure: dict[str, Any] = Field(
        description="the new disclosure policy (same shape as the spec's `disclosure`)"
    )


class MemberAdd(RequestBody):
    principal: str = Field(min_length=1, max_length=200, description="name or id")


class ProjectOut(BaseModel):
    id: str
    name: str
    purpose: str
    legal_basis: str
    agreement: str
    spec_fingerprint: str
    key_check_value: str | None
    retention_days: int
    disclosure: dict[str, Any]
    spec: dict[str, Any]
    members: list[dict[str, str]]
    created_at: datetime
    created_by: str
    epsilon_spent: float
    run_rules: RunRules = Field(description="fixed at creation")
    enclave_state_version: int = Field(description="releases whose enclave state is stored")
    policy_fingerprint: str = Field(
        description="sha256 of the disclosure policy in force; partners' envelopes must name it"
    )
    enclave_key_fingerprint: str | None = Field(
        description="sha256 (hex) of the enclave public key partners seal to for this project"
    )
    period_scheme: str | None = Field(None, description="how periods are named (null: any)")
