"""The deadlines loop: follow the outbox for trigger events, then run the clock.

One loop per process is enough and any number may run: starting a term is unique per
communication and each change of status is compare-and-set.
"""

from __future__ import annotations

from sealpost.config import Settings
from sealpost.deadlines.service import DeadlineService
from sealpost.loops import Loop, periodic


def run_once(service: DeadlineService) -> int:
    """Start new terms (every event since the cursor), then seal what the clock says."""
    followed = 0
    while True:
        read = service.follow_once()
        followed += read
        if read < service.settings.batch:
            break
    return followed + service.tick()


def loops(service: DeadlineService, settings: Settings) -> list[Loop]:
    if not settings.deadlines_worker_enabled:
        return []
    interval = settings.deadlines_interval_seconds
    return [periodic("deadlines", interval, lambda: run_once(service))]
