"""The pickup notice as an SMS: GSM-7 only, the deadline on the policy's legal clock.

A single character outside the GSM-7 alphabet (a sender named "Łódź Ltd", an emoji) turns the
whole SMS into UCS-2: 70 characters a segment instead of 160, so the notice would cost three
or four segments instead of two (3GPP TS 23.038 §6.2.1, TS 23.040 §9.2.3.24.1).  The sender's
name is therefore transliterated (accents dropped where GSM-7 lacks the letter) and what is
left outside the alphabet dropped.  The pickup domain does not import the sms domain: the
basic alphabet is repeated here (TS 23.038 §6.2.1, without the escape)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_LATIN = {
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "ı": "i",
    "Œ": "OE",
    "œ": "oe",
    "Þ": "Th",
    "þ": "th",
}
"""Latin letters without a decomposition (NFKD leaves them whole)."""
NAME_MAX = 40
"""A longer sender name is cut: the notice stays within two segments."""


def gsm7(text: str) -> str:
    """``text`` with every character in the GSM-7 basic alphabet: kept if it is, else its
    letter without the accent (NFKD) if that is, else dropped; line breaks become spaces."""
    out = []
    for ch in text:
        if ch in "\r\n\t":
            out.append(" ")
        elif ch in GSM7_BASIC:
            out.append(ch)
        elif ch in _LATIN:
            out.append(_LATIN[ch])
        else:
            out.extend(c for c in unicodedata.normalize("NFKD", ch) if c in GSM7_BASIC)
    return " ".join("".join(out).split())


def deadline(closes: datetime, zone: ZoneInfo | None) -> str:
    """``dd/mm/yyyy HH:MM`` on the legal clock, the zone named (the minute is cut, never
    rounded up: the recipient is never told a later time than the close)."""
    local = closes.astimezone(zone or UTC)
    return f"{local:%d/%m/%Y %H:%M} {zone.key if zone else 'UTC'}"


def notice(
    sender: str | None, url: str, closes: datetime, zone: ZoneInfo | None, *, reminder: bool
) -> str:
    """One segment for a short sender name on UTC or a short public URL; two at most."""
    head = "Reminder: a" if reminder else "A"
    name = gsm7(sender or "")[:NAME_MAX].strip()
    who = f" from {name}" if name else ""
    return f"{head} certified message{who} awaits you until {deadline(closes, zone)}: {url}"
