"""Pickup resends are counted: ``pickups.resends`` (0 for every existing pickup), so that the
sender's resend can be capped (review2 M3: each resend is a new message to the recipient and
a new link; unbounded, it is a way to harass the recipient).

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pickups") as batch:
        batch.add_column(sa.Column("resends", sa.Integer, server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("pickups") as batch:
        batch.drop_column("resends")
