"""Run rules and the enclave's state counter.

- ``projects.run_rules_json``: the project's run rules (parameter menu, minimum extract
  size, rate limits, output checking), fixed at creation; ``{}`` means the defaults.
- ``projects.enclave_state_version``: how many times the enclave has stored its
  authenticated state for the project; incremented in the transaction that stores a
  release, so a missing, forged or rolled-back state file is detected.
- ``runs.epsilon_reserved``: privacy budget reserved when a worker claimed the run.

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(
            sa.Column("run_rules_json", sa.Text(), nullable=False, server_default="{}")
        )
        batch.add_column(
            sa.Column("enclave_state_version", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("epsilon_reserved", sa.Float(), nullable=False, server_default="0")
        )
    op.create_index("ix_runs_project_created", "runs", ["project_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_project_created", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("epsilon_reserved")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("enclave_state_version")
        batch.drop_column("run_rules_json")
