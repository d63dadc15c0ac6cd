"""The CloudEvents 1.0 envelope of every event out, in the JSON event format (structured mode).

One byte string per event, built once when the event is written and never changed: the same
bytes go to the AMQP queue, to every webhook (whose signature covers exactly them) and to the
pull API, so what an integrator stores can be compared byte for byte.

Attributes (CloudEvents 1.0 §3): ``specversion`` "1.0", ``id`` (a UUID, the same on every
redelivery: deduplicate on it), ``source`` ``/tenants/<tenant id>``, ``type``
(``sealpost.<subject>.<change>``), ``subject`` (``communications/<id>``, the resource's path under
``/v1``), ``time`` (when the change happened, RFC 3339 UTC), ``datacontenttype``
``application/json``, and the *sequence* extension: the event's rank among its subject's
events, 1, 2, 3... as a zero-padded decimal string (the extension wants lexicographic order).
"""

from __future__ import annotations

import json
from typing import Any

from sealpost.events.registry import NewEvent
from sealpost.ledger.records import format_time

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
SEQUENCE_DIGITS = 20


def source_of(tenant_id: str) -> str:
    return f"/tenants/{tenant_id}"


def format_sequence(sequence: int) -> str:
    return f"{sequence:0{SEQUENCE_DIGITS}d}"


def envelope(event: NewEvent, sequence: int) -> dict[str, Any]:
    return {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": source_of(event.tenant_id),
        "type": event.type,
        "subject": event.subject,
        "time": format_time(event.time),
        "datacontenttype": "application/json",
        "sequence": format_sequence(sequence),
        "data": dict(event.data),
    }


def encode(envelope: dict[str, Any]) -> str:
    """Compact JSON, UTF-8 kept as is: the exact text that is stored, sent and signed."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str)
