"""What the deadlines kit needs from the domain whose subject a term runs on."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection


class SubjectEvidence(Protocol):
    def recorded_in(
        self, conn: Connection, subject_type: str, subject_id: str, now: datetime
    ) -> None:
        """A deadline record was added to the subject in this transaction (its evidence
        certificate is due again, with the term on it)."""
