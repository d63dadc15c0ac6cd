"""The public log: checkpoint and hash tiles in the C2SP ``tlog-tiles`` layout, unauthenticated.

Anyone can fetch them, recompute the tree and monitor the log (``sealpost ledger monitor``, or
any tlog-tiles client) without an API key: they hold hashes and the signed checkpoint only,
never a tenant's record.  Entry bundles (``tile/entries/...``) are therefore not served; a
record's holder proves inclusion with its evidence bundle, whose leaf hash is in the level-0
tiles (docs/evidence-format.md, "A log anyone can audit").

Caching (c2sp.org/tlog-tiles): a full tile never changes (``immutable``, a year); a partial
tile and the checkpoint are cached for seconds only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from sealpost.api.errors import problem_responses
from sealpost.errors import NotFound, TooManyRequests
from sealpost.ledger.note import NoteVerifier
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.tiles import TILE_WIDTH, TileNotFound, parse_tile_path, read_tile

PREFIX = "/log"
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "public, max-age=60"
CHECKPOINT_CACHE = "public, max-age=2"
"""c2sp.org/tlog-tiles: the checkpoint "SHOULD prevent caching beyond a few seconds"."""

router = APIRouter(prefix=PREFIX, tags=["public log"], responses=problem_responses(TooManyRequests))


class NoCheckpointYet(NotFound):
    """No head signed as a note yet (a new log, or one sealed before it had a note key)."""

    code = "no_checkpoint_yet"
    title = "No checkpoint yet"


def _ledger(request: Request) -> LedgerReader:
    reader: LedgerReader = request.app.state.ledger
    return reader


def _verifier(request: Request) -> NoteVerifier:
    verifier: NoteVerifier = request.app.state.log_note_verifier
    return verifier


@router.get(
    "/checkpoint",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "A C2SP signed note."},
        **problem_responses(NoCheckpointYet),
    },
)
def checkpoint(ledger: Annotated[LedgerReader, Depends(_ledger)]) -> Response:
    """The latest checkpoint as a C2SP signed note, Ed25519-signed by the log's note key
    (verifier key at ``/log/verifier-key``); witnesses can cosign it as it is."""
    head = ledger.head()
    note = None if head is None else head.signed_note()
    if note is None:
        raise NoCheckpointYet(
            "the log has no checkpoint signed as a note yet: the next sealed batch signs one"
        )
    return Response(
        note,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": CHECKPOINT_CACHE},
    )


@router.get(
    "/verifier-key",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "<name>+<id>+<key>"}},
)
def verifier_key(verifier: Annotated[NoteVerifier, Depends(_verifier)]) -> Response:
    """The note verifier key, ``<origin>+<hex key ID>+base64(0x01 || Ed25519 public key)``.
    Compare it out of band (``sealpost ledger verifier-key`` on the log's host) before
    trusting it: a monitor or witness must not learn it from the log it checks."""
    return Response(
        verifier.vkey() + "\n",
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get(
    "/tile/{tile:path}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "N x 32-byte hashes"},
        **problem_responses(TileNotFound),
    },
)
def tile(
    tile: Annotated[str, Path(description="<L>/<N>[.p/<W>], N as x001/x234/067")],
    ledger: Annotated[LedgerReader, Depends(_ledger)],
) -> Response:
    """A hash tile (c2sp.org/tlog-tiles): level ``L``'s hashes ``N*256 ..`` (256, or ``W``
    for a partial tile), from the stored nodes of the latest tree."""
    level, index, width = parse_tile_path(tile)
    data = read_tile(ledger.storage, level, index, width, ledger.storage.state().tree_size)
    cache = FULL_TILE_CACHE if width == TILE_WIDTH else PARTIAL_TILE_CACHE
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": cache})
