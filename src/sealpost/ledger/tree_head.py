"""Signed tree heads: the checkpoint text, its seal signature and its RFC 3161 token.

Byte layout of the checkpoint body (C2SP ``tlog-checkpoint``), UTF-8, every line ending in
``\\n``::

    <origin>                      e.g. "sealpost.example.com/ledger"
    <tree size>                   decimal, no leading zeros
    <root hash>                   standard base64 of the 32-byte RFC 9162 root
    time <RFC 3339 UTC, µs>       extension line: when the sequencer signed this head

The seal signature is a detached signature (ECDSA or RSA with SHA-256) over exactly those
bytes, by the service's seal certificate.  The timestamp token is an RFC 3161 token whose
message imprint is SHA-256 of the *signature value*, the CAdES "signature timestamp"
convention: it proves the signature, and so the root, existed at the token's time.

The same checkpoint text is also signed as a C2SP signed note with the log's Ed25519 key
(``note.py``): ``note_signature`` is key ID || signature, made by the sequencer with the head.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from sealpost.ledger.errors import BundleFormatError, RecordError
from sealpost.ledger.note import signature_line
from sealpost.ledger.records import format_time, parse_time


@dataclass(frozen=True)
class Checkpoint:
    """The signed statement "the log named origin had this root at this size and time"."""

    origin: str
    tree_size: int
    root_hash: bytes
    time: datetime

    def to_text(self) -> str:
        return (
            f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root_hash).decode()}\n"
            f"time {format_time(self.time)}\n"
        )

    def to_bytes(self) -> bytes:
        return self.to_text().encode("utf-8")

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Strict parse: anything else than the layout above is refused, never guessed."""
        field = "tree_head.checkpoint"
        if not isinstance(text, str) or not text.endswith("\n"):
            raise BundleFormatError("must be text ending with a newline", field=field)
        lines = text[:-1].split("\n")
        if len(lines) != 4 or not lines[3].startswith("time "):
            raise BundleFormatError("expected origin, size, root and time lines", field=field)
        origin, size_text, root_text, time_line = lines
        # ASCII digits only ("²".isdigit() is true and int() refuses it), at most 20 of them:
        # a tree size is a uint64 (C2SP tlog-checkpoint), and int() refuses past 4300 digits
        if (
            not origin
            or not (size_text.isascii() and size_text.isdigit() and len(size_text) <= 20)
            or (size_text != "0" and size_text[0] == "0")
        ):
            raise BundleFormatError("bad origin or tree size line", field=field)
        try:
            root = base64.b64decode(root_text, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII character (a plain ValueError)
            raise BundleFormatError("root hash is not base64", field=field) from None
        if len(root) != 32:
            raise BundleFormatError("root hash is not 32 bytes", field=field)
        try:
            moment = parse_time(time_line[5:], field=field)
        except RecordError as exc:
            raise BundleFormatError(exc.message, field=field) from None
        checkpoint = cls(origin, int(size_text), root, moment)
        if checkpoint.to_text() != text:
            raise BundleFormatError("not in canonical form", field=field)
        return checkpoint


@dataclass(frozen=True)
class SignedTreeHead:
    """A checkpoint with its seal signature, timestamp token and the signer's chain."""

    checkpoint: Checkpoint
    signature: bytes
    signature_algorithm: str
    timestamp_token: bytes
    seal_chain_pem: tuple[str, ...]
    """Seal certificate first, root last."""
    note_signature: bytes | None = None
    """Ed25519 signed-note signature (4-byte key ID || 64-byte signature) over the checkpoint
    text; None for heads sealed before the log had a note key."""

    def signed_note(self) -> str | None:
        """The checkpoint as a C2SP signed note (key name = origin), or None if unsigned."""
        if self.note_signature is None:
            return None
        return (
            self.checkpoint.to_text()
            + "\n"
            + signature_line(self.checkpoint.origin, self.note_signature)
        )

    @property
    def tree_size(self) -> int:
        return self.checkpoint.tree_size

    @property
    def root_hash(self) -> bytes:
        return self.checkpoint.root_hash
