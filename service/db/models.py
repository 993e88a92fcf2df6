"""The database schema as SQLAlchemy 2 models. The schema itself is only ever built by
the Alembic migrations in ``migrations/``; these classes are how the code reads it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AuditCheckpoint",
    "AuditCheckpointRequest",
    "AuditEvent",
    "AuditHead",
    "Base",
    "DpoSession",
    "Partner",
    "PartnerProject",
    "Principal",
    "Project",
    "ProjectMember",
    "Result",
    "Run",
    "Submission",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: store UTC-aware times only")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


UTC_DATETIME = UTCDateTime()


class Base(DeclarativeBase):
    pass


class Principal(Base):
    """Someone (or something) holding a bearer token, with one role."""

    __tablename__ = "principals"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    expires_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    revoked_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    # the organisation a partner token belongs to (None for other roles)
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id"), index=True)


class Partner(Base):
    """A partner organisation: exists apart from the tokens issued to it, so rotating or
    replacing a token keeps one partner in results, the DPO pages and the audit."""

    __tablename__ = "partners"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    created_by: Mapped[str] = mapped_column(String(200))


class PartnerProject(Base):
    """A project a partner organisation takes part in (its new tokens join it)."""

    __tablename__ = "partner_projects"
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)


class Project(Base):
    """A linkage project: its purpose, legal basis, agreement, spec and policy."""

    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    purpose: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    agreement: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    spec_fingerprint: Mapped[str] = mapped_column(String(80))
    disclosure_json: Mapped[str] = mapped_column(
        Text
    )  # the policy in force (may override the spec's)
    key_check_value: Mapped[str | None] = mapped_column(String(16))
    retention_days: Mapped[int] = mapped_column(Integer)
    epsilon_spent: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    created_by: Mapped[str] = mapped_column(String(200))
    # run rules fixed at creation (service.projects.rules.RunRules; "{}" = defaults)
    run_rules_json: Mapped[str] = mapped_column(Text, default="{}")
    # how often the enclave stored its authenticated state; bumped with each release
    enclave_state_version: Mapped[int] = mapped_column(Integer, default=0)
    # sha256 (hex) of the raw enclave public key partners pin; None = before revision 0002
    enclave_key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # how periods are named (quarterly, monthly, yearly); None = any short label
    period_scheme: Mapped[str | None] = mapped_column(String(20))


class ProjectMember(Base):
    __tablename__ = "project_members"
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"), primary_key=True)


class Submission(Base):
    """One partner's hashed extract, sealed to the enclave; superseded by its next one."""

    __tablename__ = "submissions"
    __table_args__ = (UniqueConstraint("project_id", "partner_id", "version"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    version: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(BigInteger)
    rows_rejected: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_path: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    superseded_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    purged_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    # received -> accepted | rejected, decided by the enclave's validator
    status: Mapped[str] = mapped_column(String(12), default="received", index=True)
    reason: Mapped[str | None] = mapped_column(Text)  # why rejected; names no value
    decided_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    policy_fingerprint: Mapped[str | None] = mapped_column(String(80))
    envelope_json: Mapped[str | None] = mapped_column(Text)  # the clear envelope
    # the period the extract covers (e.g. 2026-Q1); None = the project's one period
    period: Mapped[str | None] = mapped_column(String(20))
    # the enclave's HMAC over what it accepted (service.worker.acceptance); NULL until
    # the enclave accepts it, and on rows accepted before tags existed
    enclave_tag: Mapped[str | None] = mapped_column(String(64))


class Run(Base):
    """A linkage run, queued by an analyst and claimed by an enclave worker."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    requested_by: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    status: Mapped[str] = mapped_column(String(20), index=True)
    stage: Mapped[str] = mapped_column(String(60), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    params_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    started_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    finished_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    lease_until: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    worker_id: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # privacy budget reserved when a worker claimed the run (kept spent if it fails)
    epsilon_reserved: Mapped[float] = mapped_column(Float, default=0.0)
    # the period whose submissions the run links; None = the project's one period
    period: Mapped[str | None] = mapped_column(String(20))


class Result(Base):
    """The released (disclosure-controlled) figures of a finished run. Aggregates only."""

    __tablename__ = "results"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    released_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTC_DATETIME)

    @property
    def sha256(self) -> str:
        """Digest of the released figures: audit events name a release by it."""
        return hashlib.sha256(self.released_json.encode()).hexdigest()


class AuditEvent(Base):
    """One append-only, hash-chained audit event (UPDATE/DELETE refused by triggers)."""

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC, exactly as hashed
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(60), index=True)
    project_id: Mapped[str | None] = mapped_column(String(36), index=True)
    subject: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    request_id: Mapped[str | None] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(100))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last sequence number and hash. Locking it serialises writers."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """An Ed25519 signature over (sequence, head hash)."""

    __tablename__ = "audit_checkpoints"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    head_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(40))
    manual: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditCheckpointRequest(Base):
    """A request to sign the head, serviced by the signer (the API never holds the key)."""

    __tablename__ = "audit_checkpoint_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    requested_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    requested_by: Mapped[str] = mapped_column(String(200))
    signed_seq: Mapped[int | None] = mapped_column(BigInteger, index=True)
    signed_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)


class DpoSession(Base):
    """A DPO page session held on the server: the cookie carries a random id, this row
    its digest; sign-out sets ``ended_at``."""

    __tablename__ = "dpo_sessions"
    id_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    principal_id: Mapped[str] = mapped_column(ForeignKey("principals.id"))
    created_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    expires_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    ended_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
