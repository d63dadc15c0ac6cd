"""Checkpoints as C2SP signed notes, signed with Ed25519 (c2sp.org/signed-note).

A note is its text (here exactly the checkpoint text of ``tree_head.Checkpoint``, ``time``
extension line included: Ed25519 cosigners sign extension lines too, c2sp.org/tlog-cosignature)
then a blank line then one line per signature::

    — <key name> base64(key ID || Ed25519 signature over the text)

The key name is the log origin; the key ID is the first four bytes of
``SHA-256(name || 0x0A || 0x01 || 32-byte public key)``; the verifier key ("vkey") that
witnesses and monitors are configured with is ``<name>+<hex key ID>+base64(0x01 || public key)``.
Pure: no I/O; the private key is loaded by ``pki.keys.load_note_key``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sealpost.errors import InvalidInput

ED25519 = 0x01
"""The signed-note signature type of Ed25519."""
SIGNATURE_PREFIX = "\u2014 "
"""Em dash, space: how every signature line starts."""
MAX_SIGNATURES = 64
"""Notes with more signature lines are refused (c2sp.org/signed-note asks for at least 16)."""


class NoteError(InvalidInput):
    """A note that is malformed, or not signed by the expected key; the message says which."""

    code = "invalid_note"
    title = "Not a valid signed note"


def key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` (c2sp.org/signed-note)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty without spaces or '+'")


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 note verifier: a key name and a 32-byte public key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def vkey(self) -> str:
        """``<name>+<hex key ID>+base64(0x01 || public key)``, the form witnesses are given."""
        material = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """Strict parse of a vkey; the key ID must match the name and key it claims."""
        parts = vkey.strip().split("+", 2)  # the base64 key may hold a "+" too
        if len(parts) != 3:
            raise NoteError("a verifier key is <name>+<hex key id>+<base64 key>")
        name, hex_id, material_b64 = parts
        _check_name(name)
        try:
            claimed = bytes.fromhex(hex_id)
            material = base64.b64decode(material_b64, validate=True)
        except (ValueError, binascii.Error):
            raise NoteError("verifier key: bad hex key id or base64 key") from None
        if len(material) != 33 or material[0] != ED25519:
            raise NoteError("verifier key: only Ed25519 keys (type 0x01, 32 bytes) are supported")
        verifier = cls(name, material[1:])
        if len(claimed) != 4 or claimed != verifier.key_id:
            raise NoteError("verifier key: the key id does not match the name and key")
        return verifier

    def open(self, note: str) -> str:
        """The text of ``note`` once a signature line by this key verifies over it.

        Lines by other keys are ignored (witness cosignatures, other algorithms); a line by
        this key (same name and key ID) that fails rejects the whole note (signed-note §
        Signatures)."""
        text, signatures = split_note(note)
        verified = False
        for name, blob in signatures:
            if name != self.name or blob[:4] != self.key_id:
                continue
            key = ed25519.Ed25519PublicKey.from_public_bytes(self.public_key)
            try:
                key.verify(blob[4:], text.encode())
            except InvalidSignature:
                raise NoteError(f"the signature by {self.name} does not verify") from None
            verified = True
        if not verified:
            raise NoteError(f"no signature by {self.name} (key id {self.key_id.hex()})")
        return text


@dataclass(frozen=True)
class NoteSigner:
    """The log's Ed25519 key, named after the log origin."""

    name: str
    private_key: ed25519.Ed25519PrivateKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def verifier(self) -> NoteVerifier:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return NoteVerifier(self.name, raw)

    def sign(self, text: str) -> bytes:
        """``key ID || Ed25519(text)``: what a signature line carries, base64-encoded."""
        if not text.endswith("\n"):
            raise NoteError("a note text ends with a newline")
        return self.verifier.key_id + self.private_key.sign(text.encode())


def signature_line(name: str, signature: bytes) -> str:
    return f"{SIGNATURE_PREFIX}{name} {base64.b64encode(signature).decode()}\n"


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """A note's text and its ``(key name, key ID || signature)`` lines, strictly parsed."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteError("a note holds no control characters but newlines")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("a note is text, a blank line, then signature lines")
    text, lines = note[: cut + 1], note[cut + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"more than {MAX_SIGNATURES} signature lines")
    signatures = []
    for line in lines:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("a signature line starts with an em dash and a space")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise NoteError(f"the signature by {name} is not base64") from None
        if not name or len(blob) < 5:
            raise NoteError("a signature line names its key and carries an ID and a signature")
        signatures.append((name, blob))
    return text, signatures
