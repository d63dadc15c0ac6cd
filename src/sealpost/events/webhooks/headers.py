"""Standard Webhooks signatures (https://www.standardwebhooks.com, "Signature scheme").

The signed string is exactly ``{webhook-id}.{webhook-timestamp}.{body}``: the event id, the
Unix time in whole seconds as decimal digits, and the raw request body, joined by two dots.
The signature is HMAC-SHA256 over it with the secret's bytes (the base64 after ``whsec_``),
sent base64-encoded as ``v1,<signature>``.  While a rotated secret's predecessor is still
valid, the header carries both signatures, space-separated, so a receiver holding either
secret verifies.  ``docs/events.md`` shows a receiver; ``tests/events`` verifies our headers
with the ``standardwebhooks`` library itself.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


@dataclass(frozen=True)
class SigningSecrets:
    """An endpoint's secrets: the current one, and its predecessor while it is still valid."""

    current: str
    previous: str | None
    previous_until: datetime | None

    def valid(self, now: datetime) -> list[str]:
        """The secrets to sign with now (a header carries one signature per secret)."""
        keep = self.previous and self.previous_until and self.previous_until > now
        return [self.current, self.previous] if keep and self.previous else [self.current]


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_content(event_id: str, timestamp: int, body: str) -> str:
    return f"{event_id}.{timestamp}.{body}"


def webhook_headers(
    event_id: str, body: str, secrets_: Sequence[str], moment: datetime | None = None
) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for one attempt."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    signatures = [Webhook(s).sign(event_id, moment, body) for s in secrets_]
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
