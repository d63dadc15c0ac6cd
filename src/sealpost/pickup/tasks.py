"""The pickup worker: notices, their delivery, reminders and expiries (any number may run:
each step is compare-and-set)."""

from __future__ import annotations

from sealpost.config import Settings
from sealpost.loops import Loop, periodic
from sealpost.pickup.service import PickupService


def loops(pickup: PickupService, settings: Settings) -> list[Loop]:
    if not settings.pickup_worker_enabled:
        return []
    return [periodic("pickup", settings.pickup_worker_interval_seconds, pickup.run_due)]
