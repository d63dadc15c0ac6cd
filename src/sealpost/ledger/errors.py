"""Errors of the evidence ledger.

::

    SealpostError
    ├── RecordError (422)           a record that cannot be evidence (missing reasons, bad field)
    ├── BundleFormatError (422)     a bundle that is not JSON, or of an unknown format/version
    ├── SequencerError (409)        the sequencer refused to sign (time did not move forward,
    │   │                           the log moved under it)
    │   └── NoteKeyMismatch (409)   its note key is not the one that signed the log's heads
    └── NotSealedYet (409)          the record exists but no tree head includes it yet
"""

from __future__ import annotations

from sealpost.errors import Conflict, InvalidInput


def shown(value: object, limit: int = 60) -> str:
    """An untrusted JSON value for an error message: a scalar's repr, cut at ``limit``
    characters, else only its kind.  ``repr`` raises on a list nested 5,000 deep
    (RecursionError) and on an integer of 5,000 digits (ValueError), and a 1 MB string does
    not belong in a message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a number out of range"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if not (value is None or isinstance(value, str | int | float)):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RecordError(InvalidInput):
    """A record that cannot be evidence; ``field`` names the offending field."""

    code = "invalid_record"
    title = "Not a valid evidence record"
    problem_fields = ("field",)

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BundleFormatError(InvalidInput):
    """A bundle that cannot even be read; ``field`` names where reading stopped."""

    code = "invalid_bundle"
    title = "Not a readable evidence bundle"
    problem_fields = ("field",)

    def __init__(self, message: str, *, field: str = "bundle") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SequencerError(Conflict):
    """The sequencer refused to integrate a batch; nothing was written."""

    code = "sequencer_refused"
    title = "The sequencer refused the batch"


class NoteKeyMismatch(SequencerError):
    """The sequencer's note key is not the one that signed the log's heads: it must not seal
    (monitors and witnesses pin the log's key; another would change its identity)."""

    code = "note_key_mismatch"
    title = "The sequencer's note key is not the log's"


class NotSealedYet(Conflict):
    """The record is committed but not yet in a signed tree head; retry shortly."""

    code = "not_sealed_yet"
    title = "Not sealed yet; retry in a second"
