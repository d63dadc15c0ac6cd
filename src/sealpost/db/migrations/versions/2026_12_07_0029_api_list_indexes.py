"""Indexes for every filter of ``GET /v1/communications`` (issue 16, section 6).

The list is newest first (``submitted_at DESC, id DESC``) within a tenant, so each filter
needs an index that ends with ``submitted_at, id``: the page is then the first rows of one
index range, whatever the table's size.

* by status: ``(tenant_id, status, submitted_at, id)`` replaces ``(tenant_id, status)``,
  whose prefix it keeps (the per-status counts still use it);
* by recipient: the API compares addresses case-insensitively (``lower(recipient)``), so the
  index is on that expression (without it a query walked the tenant's whole time index);
* by date window and the cursor: ``ix_communications_tenant_submitted`` already serves them;
* ``GET /v1/signatures?status=``: ``(tenant_id, status, created_at, id)``.

On a big table build them beforehand with ``CREATE INDEX CONCURRENTLY`` (docs/deployment.md);
``if_not_exists`` then lets this migration pass.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_communications_tenant_status_submitted",
        "communications",
        ["tenant_id", "status", "submitted_at", "id"],
        if_not_exists=True,
    )
    op.drop_index("ix_communications_tenant_status", table_name="communications")
    op.create_index(
        "ix_communications_tenant_recipient",
        "communications",
        ["tenant_id", sa.text("lower(recipient)"), "submitted_at", "id"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_signature_processes_tenant_status_created",
        "signature_processes",
        ["tenant_id", "status", "created_at", "id"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_signature_processes_tenant_status_created", table_name="signature_processes")
    op.drop_index("ix_communications_tenant_recipient", table_name="communications")
    op.create_index("ix_communications_tenant_status", "communications", ["tenant_id", "status"])
    op.drop_index("ix_communications_tenant_status_submitted", table_name="communications")
