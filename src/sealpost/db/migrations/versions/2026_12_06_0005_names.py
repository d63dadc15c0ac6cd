"""One name per idea: the ``certificates`` table holds X.509 certificates (of seals, for the
bundles' chains) while "certificate" elsewhere is the evidence PDF: it becomes
``x509_certificates``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.rename_table("certificates", "x509_certificates")
    _rename_primary_key("x509_certificates", "pk_certificates", "pk_x509_certificates")


def downgrade() -> None:
    _rename_primary_key("x509_certificates", "pk_x509_certificates", "pk_certificates")
    op.rename_table("x509_certificates", "certificates")


def _rename_primary_key(table: str, old: str, new: str) -> None:
    """PostgreSQL keeps the constraint's name through a table rename; SQLite has no named
    primary keys to rename (the name is only in the table's DDL text)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')
