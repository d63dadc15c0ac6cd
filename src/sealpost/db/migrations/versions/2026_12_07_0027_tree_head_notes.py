"""Tree heads: the checkpoint's Ed25519 signed-note signature (``tree_heads.note_signature``).

The sequencer signs each head's checkpoint text as a C2SP signed note with the log's Ed25519
key, beside the X.509 seal (docs/evidence-format.md, "A log anyone can audit").  Heads sealed
before have none (NULL): the public checkpoint waits for the next sealed batch.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tree_heads") as batch:
        batch.add_column(sa.Column("note_signature", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tree_heads") as batch:
        batch.drop_column("note_signature")
