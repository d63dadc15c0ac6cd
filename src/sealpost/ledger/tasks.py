"""The ledger's background loop: the sequencer, which seals batches while it holds the lease."""

from __future__ import annotations

from sealpost.config import Settings
from sealpost.ledger.sequencer import Sequencer
from sealpost.loops import Loop


def loops(sequencer: Sequencer, settings: Settings) -> list[Loop]:
    """The sequencer, where this process may seal (``SEALPOST_SEQUENCER_ENABLED``)."""
    if not settings.sequencer_enabled:
        return []
    return [
        Loop(
            "sequencer",
            lambda stop: sequencer.run(
                stop,
                window_seconds=settings.batch_window_ms / 1000,
                lease_seconds=settings.sequencer_lease_seconds,
            ),
        )
    ]
