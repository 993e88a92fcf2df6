"""Checkpoint requests (signed outside the API), server-side DPO sessions.

The API never holds the audit signing key: it asks for a checkpoint by inserting a row
in ``audit_checkpoint_requests``, which the worker's signer services. DPO sign-ins are
rows in ``dpo_sessions`` so that sign-out and token expiry end them on the server.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("signed_seq", sa.BigInteger(), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_audit_checkpoint_requests_signed_seq"),
        "audit_checkpoint_requests",
        ["signed_seq"],
        unique=False,
    )
    op.create_table(
        "dpo_sessions",
        sa.Column("id_digest", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["principal_id"], ["principals.id"]),
        sa.PrimaryKeyConstraint("id_digest"),
    )


def downgrade() -> None:
    op.drop_table("dpo_sessions")
    op.drop_index(
        op.f("ix_audit_checkpoint_requests_signed_seq"), table_name="audit_checkpoint_requests"
    )
    op.drop_table("audit_checkpoint_requests")
