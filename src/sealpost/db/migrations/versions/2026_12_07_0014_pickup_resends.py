"""Pickup resends are counted: ``pickups.resends`` (0 for every existing pickup), so that the
sender's resend can be capped (review2 M3: each resend is a new message to the recipient and
a new link; unbounded, it is a way to harass the recipient).

``access_challenges.code_session``: a digest of the page session the pending code was asked
from, so that a code typed on another page is told "a newer code was sent" and not counted
(review2 M2; NULL for codes sent before: checked as before).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pickups") as batch:
        batch.add_column(sa.Column("resends", sa.Integer, server_default="0", nullable=False))
    with op.batch_alter_table("access_challenges") as batch:
        batch.add_column(sa.Column("code_session", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("access_challenges") as batch:
        batch.drop_column("code_session")
    with op.batch_alter_table("pickups") as batch:
        batch.drop_column("resends")
