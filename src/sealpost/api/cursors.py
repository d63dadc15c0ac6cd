"""Keyset cursors for newest-first lists: the (time, id) of the last item seen, opaque to
clients (URL-safe base64), so a page never repeats or skips an item however many are added."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from fastapi import Query

from sealpost.errors import InvalidInput
from sealpost.ledger.records import format_time, parse_time

Cursor = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z0-9_=-]*$",
        description="The next_cursor of the previous page; empty: the first page.",
    ),
]
"""The ``?cursor=`` of a list."""


def encode(moment: datetime, item_id: str) -> str:
    return base64.urlsafe_b64encode(f"{format_time(moment)}|{item_id}".encode()).decode()


def decode(cursor: str) -> tuple[datetime, str]:
    """The (time, id) a cursor names; a clear 422 for anything this API did not give."""
    try:
        moment, _, item_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        if not item_id.isprintable():  # a control character would reach the database
            raise ValueError("not an id")
        return parse_time(moment, field="cursor"), item_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput("cursor is not one this API gave") from None
