"""Ledger endpoints: tree heads, inclusion and consistency proofs, evidence bundles."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query

from sealpost.api.auth import SealpostDep, TenantDep
from sealpost.api.schemas import Bundle, ConsistencyProof, InclusionProof, TreeHead
from sealpost.app import Sealpost
from sealpost.errors import NotFound
from sealpost.ledger.errors import NotSealedYet
from sealpost.ledger.records import format_time
from sealpost.ledger.tree_head import SignedTreeHead

router = APIRouter(prefix="/v1", tags=["ledger"])


def bundles_of(
    sp: Sealpost, tenant_id: str, record_ids: Sequence[str], wait: float
) -> tuple[list[Any], list[str]]:
    """The evidence bundles of ``record_ids`` (a communication's or a process's timeline), in
    order, and those not sealed yet; waits up to ``wait`` s for the seal, fetching only what
    is still missing."""
    deadline = time.monotonic() + wait
    found: dict[str, Any] = {}
    while True:
        pending = []
        for record_id in record_ids:
            if record_id in found:
                continue
            try:
                found[record_id] = sp.ledger.bundle(record_id, tenant_id)
            except NotSealedYet:
                pending.append(record_id)
        if not pending or time.monotonic() >= deadline:
            return [found[r] for r in record_ids if r in found], pending
        time.sleep(0.05)


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


@router.get("/ledger/heads/latest", response_model=TreeHead)
def latest_head(sealpost: SealpostDep, _tenant: TenantDep) -> TreeHead:
    """The newest signed tree head."""
    head = sealpost.log_storage.head()
    if head is None:
        raise NotFound("the ledger has no tree head yet")
    return _head_body(head)


@router.get("/ledger/heads/{tree_size}", response_model=TreeHead)
def head_by_size(tree_size: int, sealpost: SealpostDep, _tenant: TenantDep) -> TreeHead:
    """The signed tree head of exactly that size (one per sealed batch)."""
    head = sealpost.log_storage.head(tree_size)
    if head is None:
        raise NotFound(f"no tree head of size {tree_size}")
    return _head_body(head)


@router.get("/ledger/proofs/inclusion/{record_id}", response_model=InclusionProof)
def inclusion_proof(
    record_id: str,
    sealpost: SealpostDep,
    tenant: TenantDep,
    tree_size: Annotated[int | None, Query(description="Default: the head that sealed it.")] = None,
) -> InclusionProof:
    """Where the tenant's record sits in the tree, and the hashes that lead to the root."""
    record, head = sealpost.ledger.sealed_record(record_id, tenant.id)
    assert record.leaf_index is not None
    size = head.tree_size if tree_size is None else tree_size
    proof = sealpost.ledger.inclusion_proof(record.leaf_index, size)
    return InclusionProof(
        record_id=record_id,
        leaf_index=record.leaf_index,
        tree_size=size,
        leaf_hash=_b64(record.leaf_hash),
        hashes=[_b64(h) for h in proof],
    )


@router.get("/ledger/proofs/consistency", response_model=ConsistencyProof)
def consistency_proof(
    sealpost: SealpostDep,
    _tenant: TenantDep,
    from_size: Annotated[int, Query(alias="from", ge=1)],
    to_size: Annotated[int, Query(alias="to", ge=1)],
) -> ConsistencyProof:
    """RFC 9162 proof that the tree of size ``to`` extends the tree of size ``from``."""
    proof = sealpost.ledger.consistency_proof(from_size, to_size)
    return ConsistencyProof(from_size=from_size, to_size=to_size, hashes=[_b64(h) for h in proof])


@router.get("/evidence/{record_id}")
def evidence_bundle(
    record_id: str,
    sealpost: SealpostDep,
    tenant: TenantDep,
    wait: Annotated[
        float, Query(ge=0, le=10, description="Seconds to wait for sealing if not sealed yet.")
    ] = 0,
) -> Bundle:
    """The record's evidence bundle, verifiable offline with ``sealpost verify``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return sealpost.ledger.bundle(record_id, tenant.id)
        except NotSealedYet:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)
