"""Open and click tracking of direct emails (issue 14 §3): each tenant's choice
(``tracking_settings``, off when absent), the tokens of each tracked communication
(``tracking_tokens``, keyed by the token's SHA-256), and ``communications.tracked_sha256``, the
copy to transmit when tracking rewrote the HTML part (NULL for every existing message).

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracking_settings",
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("opens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("clicks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tracking_tokens",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column(
            "communication_id", sa.String(36), sa.ForeignKey("communications.id"), nullable=False
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("link", sa.Integer),
        sa.Column("url", sa.Text),
        sa.Column("hits", sa.Integer, nullable=False, server_default="0"),
        sa.Column("records", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unrecorded", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_hit_at", sa.DateTime(timezone=True)),
        sa.Column("last_hit_at", sa.DateTime(timezone=True)),
        sa.Column("last_recorded_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_tracking_tokens_communication",
        "tracking_tokens",
        ["communication_id", "kind", "link"],
    )
    with op.batch_alter_table("communications") as batch:
        batch.add_column(sa.Column("tracked_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("communications") as batch:
        batch.drop_column("tracked_sha256")
    op.drop_index("ix_tracking_tokens_communication", table_name="tracking_tokens")
    op.drop_table("tracking_tokens")
    op.drop_table("tracking_settings")
