"""Access kit: links, page sessions and one-time code state move out of the signature tables.

``access_links`` takes every row of ``signing_links`` (links and sessions, with their token
digests, expiries and uses, so links already emailed and pages already open keep working);
``access_challenges`` takes the ``otp_*`` columns of ``signature_signers`` (code digest,
expiry, attempts, sends, where the code went and the email that carried it), for every signer
that has any.  Both are keyed by (tenant, subject type, subject id, party id): here
("signature_process", process id, signer id).  The old table and columns are then dropped.
A signer's ``locked`` status stays in ``signature_signers``; the access kit's lockout is its
attempt count, moved as is.  Downgrade moves the signing rows back and drops the new tables.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SUBJECT = "signature_process"

OTP_COLUMNS = (
    ("otp_hash", sa.String(length=64), None),
    ("otp_expires_at", sa.DateTime(timezone=True), None),
    ("otp_attempts", sa.Integer(), "0"),
    ("otp_sends", sa.Integer(), "0"),
    ("otp_sent_to", sa.String(length=320), None),
    ("otp_communication_id", sa.String(length=36), None),
)


def upgrade() -> None:
    op.create_table(
        "access_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("party_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_access_links_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_access_links")),
    )
    op.create_index(
        "ix_access_links_holder",
        "access_links",
        ["tenant_id", "subject_type", "subject_id", "party_id"],
        unique=False,
    )
    op.create_table(
        "access_challenges",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=36), nullable=False),
        sa.Column("party_id", sa.String(length=36), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sends", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_to", sa.String(length=320), nullable=True),
        sa.Column("communication_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_access_challenges_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id",
            "subject_type",
            "subject_id",
            "party_id",
            name=op.f("pk_access_challenges"),
        ),
    )

    op.execute(
        sa.text(
            "INSERT INTO access_links (token_sha256, kind, tenant_id, subject_type, subject_id,"
            " party_id, created_at, expires_at, used_at, ip, user_agent)"
            " SELECT l.token_sha256, l.kind, p.tenant_id, :subject, s.process_id, l.signer_id,"
            " l.created_at, l.expires_at, l.used_at, l.ip, l.user_agent"
            " FROM signing_links l"
            " JOIN signature_signers s ON s.id = l.signer_id"
            " JOIN signature_processes p ON p.id = s.process_id"
        ).bindparams(subject=SUBJECT)
    )
    op.execute(
        sa.text(
            "INSERT INTO access_challenges (tenant_id, subject_type, subject_id, party_id,"
            " channel, code_hash, expires_at, attempts, sends, sent_to, communication_id)"
            " SELECT p.tenant_id, :subject, s.process_id, s.id,"
            " CASE WHEN s.otp_sent_to IS NULL THEN NULL ELSE 'email' END,"
            " s.otp_hash, s.otp_expires_at, s.otp_attempts, s.otp_sends, s.otp_sent_to,"
            " s.otp_communication_id"
            " FROM signature_signers s"
            " JOIN signature_processes p ON p.id = s.process_id"
            " WHERE s.otp_sends > 0 OR s.otp_attempts > 0 OR s.otp_hash IS NOT NULL"
            " OR s.otp_sent_to IS NOT NULL"
        ).bindparams(subject=SUBJECT)
    )

    op.drop_index("ix_signing_links_signer", table_name="signing_links")
    op.drop_table("signing_links")
    with op.batch_alter_table("signature_signers") as batch:
        for name, _type, _default in OTP_COLUMNS:
            batch.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("signature_signers") as batch:
        for name, type_, default in OTP_COLUMNS:
            batch.add_column(
                sa.Column(name, type_, server_default=default, nullable=default is None)
            )
    op.create_table(
        "signing_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("signer_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["signer_id"],
            ["signature_signers.id"],
            name=op.f("fk_signing_links_signer_id_signature_signers"),
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_signing_links")),
    )
    op.create_index("ix_signing_links_signer", "signing_links", ["signer_id"], unique=False)

    op.execute(
        sa.text(
            "INSERT INTO signing_links (token_sha256, kind, signer_id, created_at, expires_at,"
            " used_at, ip, user_agent)"
            " SELECT token_sha256, kind, party_id, created_at, expires_at, used_at, ip,"
            " user_agent FROM access_links"
            " WHERE subject_type = :subject"
            " AND party_id IN (SELECT id FROM signature_signers)"
        ).bindparams(subject=SUBJECT)
    )
    challenge = (
        "(SELECT c.{column} FROM access_challenges c WHERE c.subject_type = :subject"
        " AND c.subject_id = signature_signers.process_id"
        " AND c.party_id = signature_signers.id)"
    )
    moved = {
        "otp_hash": "code_hash",
        "otp_expires_at": "expires_at",
        "otp_attempts": "attempts",
        "otp_sends": "sends",
        "otp_sent_to": "sent_to",
        "otp_communication_id": "communication_id",
    }
    assignments = ", ".join(f"{old} = {challenge.format(column=new)}" for old, new in moved.items())
    op.execute(
        sa.text(
            f"UPDATE signature_signers SET {assignments}"  # noqa: S608 - column names are constants
            " WHERE EXISTS (SELECT 1 FROM access_challenges c WHERE c.subject_type = :subject"
            " AND c.subject_id = signature_signers.process_id"
            " AND c.party_id = signature_signers.id)"
        ).bindparams(subject=SUBJECT)
    )

    op.drop_table("access_challenges")
    op.drop_index("ix_access_links_holder", table_name="access_links")
    op.drop_table("access_links")
