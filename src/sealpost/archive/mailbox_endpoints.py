"""The archive's IMAP mailboxes (``/v1/archive/mailboxes``): settings (the administrator's
only) and the state of their reading, which supervisors and auditors may see too.  The
secret (password or access token) is write-only: no answer ever contains it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from sealpost.api.errors import problem_responses
from sealpost.archive.mailboxes import FolderCursor, Mailbox, MailboxService
from sealpost.archive.viewers import Id, ViewerDep, archive_router, require
from sealpost.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)

router = archive_router("/v1/archive/mailboxes")


def mailbox_service(request: Request) -> MailboxService:
    service: MailboxService = request.app.state.archive_mailboxes
    return service


ServiceDep = Annotated[MailboxService, Depends(mailbox_service)]
Tls = Literal["ssl", "starttls", "none"]
Auth = Literal["password", "xoauth2"]


class MailboxBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Unique per tenant.")
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(993, ge=1, le=65535)
    tls: Tls = Field("ssl", description="ssl (port 993), starttls (143), none (same host only).")
    username: str = Field(min_length=1, max_length=320)
    auth: Auth = Field(
        "password", description="password (LOGIN) or xoauth2 (secret: an OAuth2 access token)."
    )
    secret: str = Field(
        min_length=1, max_length=8192, description="Password or access token; never returned."
    )
    folders: list[str] = Field(["INBOX"], min_length=1, max_length=50)
    enabled: StrictBool = True


class MailboxPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    host: str | None = Field(None, min_length=1, max_length=253)
    port: int | None = Field(None, ge=1, le=65535)
    tls: Tls | None = None
    username: str | None = Field(None, min_length=1, max_length=320)
    auth: Auth | None = None
    secret: str | None = Field(
        None, min_length=1, max_length=8192, description="A new password or access token."
    )
    folders: list[str] | None = Field(None, min_length=1, max_length=50)
    enabled: StrictBool | None = None


class MailboxOut(BaseModel):
    id: str
    name: str
    host: str
    port: int
    tls: str
    username: str
    auth: str
    folders: list[str]
    enabled: bool
    state: str = Field(description="ok, failing (see last_error) or disabled.")
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, m: Mailbox) -> MailboxOut:
        return cls(
            id=m.id,
            name=m.name,
            host=m.host,
            port=m.port,
            tls=m.tls,
            username=m.username,
            auth=m.auth,
            folders=list(m.folders),
            enabled=m.enabled,
            state=m.state,
            last_error=m.last_error,
            created_at=m.created_at,
            updated_at=m.updated_at,
        )


class FolderOut(BaseModel):
    folder: str
    uidvalidity: int
    last_uid: int = Field(description="The last UID archived under this UIDVALIDITY.")
    messages_fetched: int
    synced_at: datetime | None

    @classmethod
    def of(cls, c: FolderCursor) -> FolderOut:
        return cls(
            folder=c.folder,
            uidvalidity=c.uidvalidity,
            last_uid=c.last_uid,
            messages_fetched=c.messages_fetched,
            synced_at=c.synced_at,
        )


class MailboxStateOut(BaseModel):
    id: str
    state: str = Field(description="ok, failing or disabled.")
    last_error: str | None
    failing_since: datetime | None
    consecutive_failures: int
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    next_attempt_at: datetime | None = Field(description="null while disabled.")
    messages_fetched: int
    folders: list[FolderOut]


@router.post(
    "",
    status_code=201,
    response_model=MailboxOut,
    responses=problem_responses(InvalidInput, Conflict),
)
def create_mailbox(body: MailboxBody, service: ServiceDep, viewer: ViewerDep) -> MailboxOut:
    """Pull an IMAP mailbox into the archive; read at once, then kept up (IDLE or polling)."""
    require(viewer, "admin")
    return MailboxOut.of(service.create(viewer.tenant_id, **body.model_dump()))


@router.get("", response_model=list[MailboxOut])
def list_mailboxes(service: ServiceDep, viewer: ViewerDep) -> list[MailboxOut]:
    require(viewer, "admin", "supervisor", "auditor")
    return [MailboxOut.of(m) for m in service.repo.all(viewer.tenant_id)]


@router.get("/{mailbox_id}", response_model=MailboxOut, responses=problem_responses(NotFound))
def get_mailbox(mailbox_id: Id, service: ServiceDep, viewer: ViewerDep) -> MailboxOut:
    require(viewer, "admin", "supervisor", "auditor")
    return MailboxOut.of(service.get(viewer.tenant_id, mailbox_id))


@router.patch(
    "/{mailbox_id}",
    response_model=MailboxOut,
    responses=problem_responses(NotFound, InvalidInput, Conflict),
)
def update_mailbox(
    mailbox_id: Id, body: MailboxPatch, service: ServiceDep, viewer: ViewerDep
) -> MailboxOut:
    """Change settings (a new password, folders, enabled); the mailbox is tried at once."""
    require(viewer, "admin")
    changes = body.model_dump(exclude_unset=True)
    for key, value in changes.items():
        if value is None:
            raise InvalidInput(f"{key}: may not be null")
    return MailboxOut.of(service.update(viewer.tenant_id, mailbox_id, **changes))


@router.get(
    "/{mailbox_id}/state",
    response_model=MailboxStateOut,
    responses=problem_responses(NotFound),
)
def mailbox_state(mailbox_id: Id, service: ServiceDep, viewer: ViewerDep) -> MailboxStateOut:
    """How reading it goes: ``failing`` with the last error (a refused login, an unreachable
    server), the retry's time, what each folder's cursor holds."""
    require(viewer, "admin", "supervisor", "auditor")
    m = service.get(viewer.tenant_id, mailbox_id)
    return MailboxStateOut(
        id=m.id,
        state=m.state,
        last_error=m.last_error,
        failing_since=m.failing_since,
        consecutive_failures=m.consecutive_failures,
        last_attempt_at=m.last_attempt_at,
        last_success_at=m.last_success_at,
        next_attempt_at=m.next_attempt_at if m.enabled else None,
        messages_fetched=m.messages_fetched,
        folders=[FolderOut.of(c) for c in service.repo.folders(m.id) if c.folder in m.folders],
    )
