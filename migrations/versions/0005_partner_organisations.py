"""Partners are organisations: a partner exists apart from the tokens issued to it.

- ``partners``: one row per partner organisation (its name is what results, the DPO
  pages and the audit show).
- ``partner_projects``: the projects an organisation takes part in; tokens issued to it
  join them.
- ``principals.partner_id``: the organisation a partner token belongs to.

Every existing partner principal becomes an organisation of the same name, so results
keep naming partners as before.

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partners",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "partner_projects",
        sa.Column("partner_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["partner_id"], ["partners.id"]),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("partner_id", "project_id"),
    )
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("partner_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key("fk_principals_partner_id", "partners", ["partner_id"], ["id"])
        batch.create_index("ix_principals_partner_id", ["partner_id"])

    bind = op.get_bind()
    principals = sa.table(
        "principals",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("role", sa.String),
        sa.column("partner_id", sa.String),
    )
    partners = sa.table(
        "partners",
        sa.column("id", sa.String),
        sa.column("name", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("created_by", sa.String),
    )
    members = sa.table(
        "project_members", sa.column("project_id", sa.String), sa.column("principal_id", sa.String)
    )
    links = sa.table(
        "partner_projects", sa.column("partner_id", sa.String), sa.column("project_id", sa.String)
    )
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(principals.c.id, principals.c.name).where(principals.c.role == "partner")
    ).all()
    for principal_id, name in rows:
        partner_id = str(uuid.uuid4())
        bind.execute(
            partners.insert().values(
                id=partner_id, name=name, created_at=now, created_by="migration 0005"
            )
        )
        bind.execute(
            principals.update().where(principals.c.id == principal_id).values(partner_id=partner_id)
        )
        for (project_id,) in bind.execute(
            sa.select(members.c.project_id).where(members.c.principal_id == principal_id)
        ).all():
            bind.execute(links.insert().values(partner_id=partner_id, project_id=project_id))


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_index("ix_principals_partner_id")
        batch.drop_constraint("fk_principals_partner_id", type_="foreignkey")
        batch.drop_column("partner_id")
    op.drop_table("partner_projects")
    op.drop_table("partners")
