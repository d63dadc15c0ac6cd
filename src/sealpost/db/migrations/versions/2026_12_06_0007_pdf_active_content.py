"""Signing settings: whether a tenant accepts PDFs with active content.

``tenant_signing_settings.allow_active_content`` (0 or 1, as ``webhook_endpoints.enabled``),
0 for every existing tenant: documents with JavaScript, launch actions and the like are
refused from now on unless the tenant says otherwise (``PUT /v1/settings/signing``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_signing_settings") as batch:
        batch.add_column(
            sa.Column("allow_active_content", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("tenant_signing_settings") as batch:
        batch.drop_column("allow_active_content")
