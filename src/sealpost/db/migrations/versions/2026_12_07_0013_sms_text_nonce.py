"""The nonce of an access-secret SMS's sealed digest (review 2, HIGH).

``sms_messages.text_nonce``: hex of 16 random bytes, set only for an SMS that carries a
one-time code or single-use link; its ``text_sha256`` (and every evidence record's content
SHA-256) is then ``sha256(nonce ‖ 0x00 ‖ text)``, a commitment the tenant cannot brute-force.
Null for every existing SMS: their digests stay what they were sealed as.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_messages") as batch:
        batch.add_column(sa.Column("text_nonce", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("sms_messages") as batch:
        batch.drop_column("text_nonce")
