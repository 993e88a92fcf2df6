"""Join the schema branches built in parallel (0002 sealed upload, 0003 run rules,
0004 audit receipts and sessions, 0005 partner organisations) into one head.

Revision ID: 0006
Revises: 0002, 0003, 0004, 0005
"""

from __future__ import annotations

revision = "0006"
down_revision = ("0002", "0003", "0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: the branches touch different tables and columns."""


def downgrade() -> None:
    """Nothing to change."""
