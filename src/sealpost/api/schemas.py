"""Response shapes of the API (pydantic, at the boundary only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LedgerHealth(BaseModel):
    tree_size: int
    pending_records: int = Field(
        description="Records waiting for their seal, counted up to SEALPOST_METRICS_BACKLOG_CAP."
    )
    last_head_age_seconds: float | None
    oldest_pending_age_seconds: float | None = Field(
        None, description="How long the oldest record not yet sealed has waited."
    )


class LoopHealthOut(BaseModel):
    state: str = Field(description="running, restarting (failed; waiting to restart), stopped.")
    restarts: int
    last_error: str | None = Field(description="The type of its last failure (details: logs).")


class EventsHealth(BaseModel):
    unpositioned: int = Field(
        description="Committed events the dispatcher has not taken yet, counted up to "
        "SEALPOST_METRICS_BACKLOG_CAP."
    )
    last_position: int
    amqp_lag: int | None = Field(description="Events not yet confirmed by RabbitMQ.")
    webhook_deliveries: dict[str, int] = Field(description="Deliveries by state.")


class Health(BaseModel):
    status: str = Field(
        description="ok; degraded (200: a problem elsewhere, e.g. sealing late on an API-only "
        "replica); unhealthy or unavailable (503)."
    )
    database: str
    ledger: LedgerHealth | None
    events: EventsHealth | None = None
    loops: dict[str, LoopHealthOut] = Field(
        default_factory=dict, description="This process's background loops."
    )
    problems: list[str] = Field(
        default_factory=list, description="Why the status is not ok, in words."
    )


class Readiness(BaseModel):
    status: str = Field(description="ready (200) or not ready (503).")
    checks: dict[str, str] = Field(
        description="Each check of this process (database, blob_store, loops; broker and smtp "
        "where this process uses them): ok, or why not (errors by type only)."
    )
    not_ready: list[str] = Field(description="The checks that are not ok.")


class TreeHead(BaseModel):
    tree_size: int
    root_hash: str = Field(description="Base64 RFC 9162 root hash.")
    time: str
    checkpoint: str = Field(description="C2SP checkpoint body, the exact signed bytes.")
    signature_algorithm: str
    signature: str = Field(description="Base64 detached signature over the checkpoint.")
    timestamp_token: str = Field(description="Base64 RFC 3161 token over the signature value.")
    seal_certificates: list[str] = Field(description="PEM, seal certificate first, root last.")


class InclusionProof(BaseModel):
    record_id: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    hashes: list[str]


class ConsistencyProof(BaseModel):
    from_size: int = Field(alias="from")
    to_size: int = Field(alias="to")
    hashes: list[str]

    model_config = {"populate_by_name": True}


Bundle = dict[str, Any]
