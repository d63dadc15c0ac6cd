"""The roles of ``sealpost serve``: which parts of Sealpost one process runs.

One binary, one database schema, several kinds of process.  ``all`` is the embedded default
(everything in one process); at scale each replica runs one role over a shared PostgreSQL,
RabbitMQ and blob store, any number of each:

* ``api``: the REST API, the public pages (pickup, signing, opt-out, the public log), the
  embedded RFC 3161 TSA;
* ``smtp``: the SMTP listeners (submission, implicit TLS, inbound and journal);
* ``worker``: everything that works from claimed rows: email delivery, evidence
  certificates, signatures, SMS, pickup notices and expiries, deadlines, reminder sequences,
  the archive's followers, IMAP pull, retention and indexer;
* ``dispatcher``: events out: the events dispatcher (positions outbox events, one active at a
  time by lease), the AMQP publisher it drives, and the webhook sender.

Every role may also be the ledger's sequencer (one active at a time, by lease) unless
``SEALPOST_SEQUENCER_ENABLED=false``.  A role never turns a part *on*: the ``*_ENABLED``
settings still switch parts off in any role.
"""

from __future__ import annotations

from typing import Final

from sealpost.config import Settings

ROLES: Final = ("all", "api", "smtp", "worker", "dispatcher")

DUTIES: Final[dict[str, str]] = {
    "all": "everything below in one process (the embedded default)",
    "api": "REST API, public pages (pickup, signing, opt-out, the public log), "
    "the embedded TSA (/tsa)",
    "smtp": "SMTP listeners: submission, implicit TLS, inbound (bounces, replies, journal)",
    "worker": "email delivery, evidence certificates, signatures, SMS, pickup notices and "
    "expiries, deadlines, reminder sequences, archive followers, IMAP pull, retention, indexer",
    "dispatcher": "events out: the outbox dispatcher (one active, by lease), the AMQP "
    "publisher and the webhook sender",
}
"""What each role runs, as the CLI help and docs/deployment.md say it."""

PARTS: Final[dict[str, str]] = {
    "smtp_enabled": "smtp",
    "delivery_enabled": "worker",
    "certificates_enabled": "worker",
    "signing_worker_enabled": "worker",
    "pickup_worker_enabled": "worker",
    "deadlines_worker_enabled": "worker",
    "archive_purge_enabled": "worker",
    "sms_sender_enabled": "worker",
    "sequences_worker_enabled": "worker",
    "archive_worker_enabled": "worker",
    "archive_imap_enabled": "worker",
    "archive_indexer_enabled": "worker",
    "events_dispatcher_enabled": "dispatcher",
    "webhooks_enabled": "dispatcher",
}
"""Each part's switch and the one role that runs it (besides ``all``)."""


def for_role(settings: Settings, role: str) -> Settings:
    """``settings`` with every part of another role switched off (none switched on)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role == "all":
        return settings
    return settings.model_copy(
        update={
            part: bool(getattr(settings, part)) and owner == role for part, owner in PARTS.items()
        }
    )


def help_text() -> str:
    """The ``--role`` help: every role and its duties."""
    duties = "; ".join(f"{role}: {DUTIES[role]}" for role in ROLES)
    return (
        f"One of {', '.join(ROLES)}. {duties}. Run any number of each over one PostgreSQL "
        "(+ RabbitMQ); every role may also seal the ledger (one sequencer at a time, by lease) "
        "unless SEALPOST_SEQUENCER_ENABLED=false."
    )
