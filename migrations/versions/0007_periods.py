"""Periods: a submission belongs to a period (e.g. ``2026-Q1``) and a run links one period.

- ``projects.period_scheme``: how the project names its periods (``quarterly``,
  ``monthly``, ``yearly``), or NULL for any short label;
- ``submissions.period`` and ``runs.period``: the period's label, NULL for the project's
  one default period (every submission and run made before this revision).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"  # 0006_merge_branches.py
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("period_scheme", sa.String(length=20), nullable=True))
    op.add_column("submissions", sa.Column("period", sa.String(length=20), nullable=True))
    op.add_column("runs", sa.Column("period", sa.String(length=20), nullable=True))
    op.create_index("ix_submissions_project_period", "submissions", ["project_id", "period"])


def downgrade() -> None:
    op.drop_index("ix_submissions_project_period", table_name="submissions")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("period")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("period")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("period_scheme")
