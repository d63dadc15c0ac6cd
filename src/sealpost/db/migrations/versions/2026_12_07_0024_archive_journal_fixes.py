"""The journal token out of the sightings already archived (issue 15, security review).

A journal sighting's reference kept the envelope's whole ``rcpt_to``: the tenant's journal
address with its token (the address's only secret) and, when several tenants were journaled in
one transaction, the other tenants' addresses too; every agent who sees the message reads the
reference.  The reference now keeps ``journal+…@<domain>`` only (``ArchiveJournal.archive``);
this rewrites the references stored before in the same form, dropping ``rcpt_count`` (how many
tenants were named).  The ``transaction`` stays, so the unique (message, kind, reference) holds.

The downgrade changes nothing: the tokens are gone (rotating the token is the remedy for any
copy elsewhere, ``PATCH /v1/archive/settings {"rotate_journal_token": true}``).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

_ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"


def redacted(ref: str) -> str | None:
    """The reference with its journal addresses redacted; None when it needs no change (or is
    not the journal's JSON envelope)."""
    try:
        envelope: Any = json.loads(ref)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("rcpt_to"), list):
        return None
    domains = sorted({str(r).rpartition("@")[2][:255] for r in envelope["rcpt_to"]})
    rcpt_to = [f"journal+{_ELLIPSIS}@{d}" for d in domains[:1]]
    if envelope["rcpt_to"] == rcpt_to and "rcpt_count" not in envelope:
        return None
    envelope["rcpt_to"] = rcpt_to
    envelope.pop("rcpt_count", None)
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"))


def upgrade() -> None:
    conn = op.get_bind()
    sightings = sa.table(
        "archive_sightings",
        sa.column("id", sa.String),
        sa.column("source_kind", sa.String),
        sa.column("source_ref", sa.Text),
    )
    rows = conn.execute(
        sa.select(sightings.c.id, sightings.c.source_ref).where(
            sightings.c.source_kind == "journal"
        )
    ).all()
    for sighting_id, ref in rows:
        new = redacted(ref or "")
        if new is not None:
            conn.execute(
                sa.update(sightings).where(sightings.c.id == sighting_id).values(source_ref=new)
            )


def downgrade() -> None:
    pass
