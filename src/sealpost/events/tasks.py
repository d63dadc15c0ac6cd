"""Events out's background loops: the dispatcher (one active by lease) and the webhook sender."""

from __future__ import annotations

from sealpost.config import Settings
from sealpost.events.dispatcher import EventDispatcher
from sealpost.events.webhooks.sender import WebhookSender
from sealpost.loops import Loop, in_event_loop


def loops(dispatcher: EventDispatcher, sender: WebhookSender, settings: Settings) -> list[Loop]:
    found = []
    if settings.events_dispatcher_enabled:
        found.append(in_event_loop("events", dispatcher.run))
    if settings.webhooks_enabled:
        found.append(in_event_loop("webhooks", sender.run))
    return found
