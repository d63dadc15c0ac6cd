"""Evidence endpoints: tree heads, inclusion and consistency proofs, evidence bundles.

They read the ledger only (any process can serve them); ``LedgerDep`` is this domain's
dependency, set by the composition root."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from sealpost.api.auth import TenantDep
from sealpost.api.errors import problem_responses
from sealpost.api.schemas import Bundle, ConsistencyProof, InclusionProof, TreeHead
from sealpost.api.text import MAX_BIGINT, Identifier
from sealpost.db.full import StorageFull
from sealpost.errors import NotFound, ServiceUnavailable, TooManyRequests, Unauthorized
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.etsi_view import view_of_bundle
from sealpost.ledger.proofs import LedgerReader
from sealpost.ledger.records import format_time
from sealpost.ledger.tree_head import SignedTreeHead

router = APIRouter(
    prefix="/v1",
    tags=["ledger"],
    responses=problem_responses(Unauthorized, TooManyRequests, ServiceUnavailable, StorageFull),
)


async def ledger_reader(request: Request) -> LedgerReader:
    reader: LedgerReader = request.app.state.ledger
    return reader


LedgerDep = Annotated[LedgerReader, Depends(ledger_reader)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _head_body(head: SignedTreeHead) -> TreeHead:
    return TreeHead(
        tree_size=head.tree_size,
        root_hash=_b64(head.root_hash),
        time=format_time(head.checkpoint.time),
        checkpoint=head.checkpoint.to_text(),
        signature_algorithm=head.signature_algorithm,
        signature=_b64(head.signature),
        timestamp_token=_b64(head.timestamp_token),
        seal_certificates=list(head.seal_chain_pem),
    )


@router.get("/ledger/heads/latest", response_model=TreeHead, responses=problem_responses(NotFound))
def latest_head(ledger: LedgerDep, _tenant: TenantDep) -> TreeHead:
    """The newest signed tree head."""
    head = ledger.head()
    if head is None:
        raise NotFound("the ledger has no tree head yet")
    return _head_body(head)


@router.get("/ledger/heads/{tree_size}", response_model=TreeHead)
def head_by_size(
    tree_size: Annotated[int, Path(ge=0, le=MAX_BIGINT)], ledger: LedgerDep, _tenant: TenantDep
) -> TreeHead:
    """The signed tree head of exactly that size (one per sealed batch)."""
    head = ledger.head(tree_size)
    if head is None:
        raise NotFound(f"no tree head of size {tree_size}")
    return _head_body(head)


@router.get(
    "/ledger/proofs/inclusion/{record_id}",
    response_model=InclusionProof,
    responses=problem_responses(NotSealedYet),
)
def inclusion_proof(
    record_id: Identifier,
    ledger: LedgerDep,
    tenant: TenantDep,
    tree_size: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="Default: the head that sealed it.")
    ] = None,
) -> InclusionProof:
    """Where the tenant's record sits in the tree, and the hashes that lead to the root."""
    record, head = ledger.sealed_record(record_id, tenant.id)
    assert record.leaf_index is not None
    size = head.tree_size if tree_size is None else tree_size
    proof = ledger.inclusion_proof(record.leaf_index, size)
    return InclusionProof(
        record_id=record_id,
        leaf_index=record.leaf_index,
        tree_size=size,
        leaf_hash=_b64(record.leaf_hash),
        hashes=[_b64(h) for h in proof],
    )


@router.get("/ledger/proofs/consistency", response_model=ConsistencyProof)
def consistency_proof(
    ledger: LedgerDep,
    _tenant: TenantDep,
    from_size: Annotated[int, Query(alias="from", ge=1, le=MAX_BIGINT)],
    to_size: Annotated[int, Query(alias="to", ge=1, le=MAX_BIGINT)],
) -> ConsistencyProof:
    """RFC 9162 proof that the tree of size ``to`` extends the tree of size ``from``."""
    proof = ledger.consistency_proof(from_size, to_size)
    return ConsistencyProof(from_size=from_size, to_size=to_size, hashes=[_b64(h) for h in proof])


@router.get("/evidence/{record_id}", responses=problem_responses(NotSealedYet))
def evidence_bundle(
    record_id: Identifier,
    ledger: LedgerDep,
    tenant: TenantDep,
    wait: Annotated[
        float, Query(ge=0, le=10, description="Seconds to wait for sealing if not sealed yet.")
    ] = 0,
    format: Annotated[
        Literal["bundle", "etsi"],
        Query(
            description='"bundle" (default): the evidence bundle; "etsi": the record as the '
            "ETSI EN 319 522-3 EvidenceType in JSON, derived from the sealed record and the "
            "seal certificate (docs/evidence-format.md), verifiable through the bundle."
        ),
    ] = "bundle",
) -> dict[str, Any]:
    """The record's evidence bundle, verifiable offline with ``sealpost verify``, or its
    ETSI view (``format=etsi``)."""
    found, _pending = ledger.bundles([record_id], tenant.id, wait)
    if not found:
        raise NotSealedYet(f"evidence record {record_id} is not sealed yet; retry in a second")
    bundle: Bundle = found[0]
    return view_of_bundle(bundle) if format == "etsi" else bundle
