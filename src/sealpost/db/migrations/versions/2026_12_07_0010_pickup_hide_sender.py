"""Registered pickup: a tenant may hide the sender's name in notices (and on the page until
acceptance) whatever the policy; off for existing tenants.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pickup_settings") as batch:
        batch.add_column(sa.Column("hide_sender", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("pickup_settings") as batch:
        batch.drop_column("hide_sender")
