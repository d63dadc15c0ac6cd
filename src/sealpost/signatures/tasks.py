"""The signature worker: expiries, reminders, signatures waiting for the TSA, finalisation.
Any number may run: each step is compare-and-set."""

from __future__ import annotations

from sealpost.config import Settings
from sealpost.loops import Loop, periodic
from sealpost.signatures.service import SignatureService


def loops(signatures: SignatureService, settings: Settings) -> list[Loop]:
    if not settings.signing_worker_enabled:
        return []
    return [periodic("signing", settings.signing_worker_interval_seconds, signatures.run_due)]
