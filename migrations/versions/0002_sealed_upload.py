"""Sealed uploads: submissions are received sealed and judged inside the enclave.

- ``submissions.status``: ``received`` (sealed payload stored, not yet opened), then
  ``accepted`` or ``rejected`` by the enclave's validator. Rows from before this revision
  were validated by the old upload path, so they are ``accepted``.
- ``submissions.reason``: why a submission was rejected (safe to show: names no value).
- ``submissions.decided_at``: when the enclave gave its verdict.
- ``submissions.policy_fingerprint``: the disclosure policy the partner acknowledged.
- ``submissions.envelope_json``: the clear envelope that travelled beside the payload.
- ``projects.enclave_key_fingerprint``: the enclave key partners pin (sha256 of the raw
  public key), recorded when the project is created.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(
            sa.Column("status", sa.String(12), nullable=False, server_default="accepted")
        )
        batch.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("policy_fingerprint", sa.String(80), nullable=True))
        batch.add_column(sa.Column("envelope_json", sa.Text(), nullable=True))
    op.create_index("ix_submissions_status", "submissions", ["status"])
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("enclave_key_fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("enclave_key_fingerprint")
    op.drop_index("ix_submissions_status", "submissions")
    with op.batch_alter_table("submissions") as batch:
        for column in ("envelope_json", "policy_fingerprint", "decided_at", "reason", "status"):
            batch.drop_column(column)
