"""The archive's background loops: the unanswered-mail round (``archive-sla``).

It runs in the worker role with the deadlines' clock (``deadlines_worker_enabled``, every
``deadlines_interval_seconds``): both are clocks of business time.  Any number may run: each
alert is raised once by a unique key, under the thread's lock.
"""

from __future__ import annotations

from sealpost.archive.sla import SlaService
from sealpost.config import Settings
from sealpost.loops import Loop, periodic


def loops(sla: SlaService, settings: Settings) -> list[Loop]:
    if not settings.deadlines_worker_enabled:
        return []
    return [periodic("archive-sla", settings.deadlines_interval_seconds, sla.tick)]
