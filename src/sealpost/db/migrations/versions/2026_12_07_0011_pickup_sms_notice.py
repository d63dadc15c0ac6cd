"""Pickup notices by SMS: which channels a pickup's notice goes by, and the SMS notice's own
delivery.

``pickups.notice_channels`` (``email``, ``sms`` or ``email,sms``; ``email`` for every existing
pickup, which is what they were sent by), ``notice_sms_id`` (the certified SMS that carried the
last notice) and ``notice_sms_status`` (``sent`` until the SMS's own delivery is known, then
``delivered``, ``failed`` or ``unconfirmed``), beside the email notice's
``notice_communication_id`` / ``notice_status``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pickups") as batch:
        batch.add_column(
            sa.Column("notice_channels", sa.String(16), server_default="email", nullable=False)
        )
        batch.add_column(sa.Column("notice_sms_id", sa.String(36)))
        batch.add_column(sa.Column("notice_sms_status", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("pickups") as batch:
        batch.drop_column("notice_sms_status")
        batch.drop_column("notice_sms_id")
        batch.drop_column("notice_channels")
