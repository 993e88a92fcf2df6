"""The enclave's acceptance tag: ``submissions.enclave_tag``.

When the enclave's validator accepts a submission the worker stores an HMAC-SHA256,
under a key only the enclave can derive, over what it accepted (the submission's id,
project, partner, version, sealed SHA-256, rows, policy fingerprint, period and the
verdict). A run links a submission only if the tag still holds and the sealed blob
still has that SHA-256 (``service.worker.acceptance``).

Rows accepted before this revision have no tag (NULL): the worker validates them again,
in its validator child, the first time a run would link them, and tags them then.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"  # 0007_periods.py
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("submissions", sa.Column("enclave_tag", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("enclave_tag")
