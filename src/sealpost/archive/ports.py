"""What the archive needs from outside its domain: a way to send a scheduled message.

A scheduled send is an ordinary communication with its own evidence (SubmissionAcceptance
and what follows); the composition root (``sealpost.app``) adapts communications' certified
mailer to :class:`Sender`, as it does for the sequences' ``Messenger``.  ``guard_in`` runs
*inside the transaction that stores the message*, before its rows: it locks the scheduled
send and raises :class:`~sealpost.archive.scheduled.SendWithdrawn` when it was cancelled (or
is no longer this worker's), else it marks it sent with the communication's id.  A cancel
updates the same row, so the two serialise: never a send after a cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection

Guard = Callable[[Connection, str], None]


@dataclass(frozen=True)
class ScheduledEmail:
    tenant_id: str
    sender: str
    sender_name: str | None
    to: str
    subject: str
    text: str
    html: str | None
    pickup: bool
    """Registered pickup: a notice, the content on acceptance (the tenant's defaults)."""
    certificate: bool
    """A certified message gets its evidence certificate; a plain one only when asked for."""
    details: Mapping[str, str]
    guard_in: Guard


class Sender(Protocol):
    def email(self, mail: ScheduledEmail) -> str:
        """Accept the email durably (its SubmissionAcceptance committed with the guard's
        effects); returns its communication id.  Raises what the guard raised, or an
        ``InvalidInput`` for a message that cannot be accepted (``sender_not_allowed``: its From
        is not of the tenant's registered domains, checked again at the send)."""
        ...

    def refused_sender(self, tenant_id: str, address: str) -> str | None:
        """Why ``address`` may not be the From of the tenant's mail (None: it may): the same
        rule as ``POST /v1/communications`` (an address of one of the tenant's registered
        domains, any address while it registered none), asked when the send is scheduled so
        that a forbidden sender is refused at once, not days later."""
        ...
