"""Reading uploaded PDFs under hard limits, away from the server's process (issue 12: no
request may exhaust the server).

An untrusted PDF costs what its author wants it to cost.  pyHanko spends 27 s parsing one page
dictionary that holds 300,000 annotations (a 5 MB file); PDFium inflates the content streams
of every page it loads, so a 1 MB document whose page inflates to 1 GiB took 12 s and 2.1 GB
of memory at intake (a 25 MiB one would take 25 GiB).  In the process that also runs the API,
the SMTP listeners and every background loop, that holds the GIL and the memory of all of them.

So every reading of an uploaded document runs in :mod:`~sealpost.signatures.workers`, a few
worker processes with a wall-clock, a CPU-time and a memory limit: the intake
(:func:`~sealpost.signatures.documents.inspect_pdf`: both parsers, the page tree, the
active-content walk, PDFium's page sizes), the ``{{signature:N}}`` anchors (PDFium reads every
page's text), and the page images of the signing page (an accepted document can still be slow
or huge to draw: intake never draws).  A document over a limit is refused with
:class:`DocumentTooComplex`, a 422 that names it; the worker is replaced, the next request is
served as usual.  Results for every other document are those of the functions themselves: they
travel back as JSON and rebuild the same values and errors.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from sealpost.config import Settings
from sealpost.errors import InvalidInput, ServiceUnavailable
from sealpost.logging import get_logger
from sealpost.signatures.active_content import ActiveContentRefused, Finding
from sealpost.signatures.documents import (
    Anchor,
    PageSize,
    PdfInfo,
    document_label,
    find_anchors,
    inspect_pdf,
    render_page_png,
)
from sealpost.signatures.workers import Busy, LimitedWorkers, LimitExceeded, Limits, Refused

log = get_logger(__name__)


class DocumentTooComplex(InvalidInput):
    """A document (or one of its pages) could not be read within the limits of PDF intake:
    ``limit`` is ``time`` or ``memory``."""

    code = "document_too_complex"
    title = "The document is too complex to check"
    problem_fields = ("document", "limit")

    def __init__(self, message: str, *, document: str, limit: str) -> None:
        super().__init__(message)
        self.document = document
        """The document's name, as sent."""
        self.limit = limit
        """``time`` (wall clock or CPU time) or ``memory`` (address space, or the reader
        crashed: a reader that cannot allocate aborts)."""


class IntakeBusy(ServiceUnavailable):
    """No intake worker became free (too many requests wait for one already, or they all
    stayed busy for the whole timeout): the server is saturated with documents to read,
    retry shortly."""

    code = "intake_busy"
    title = "Every PDF intake worker is busy; retry later"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def limits_from(settings: Settings) -> Limits:
    """The limits of PDF intake (``SEALPOST_PDF_INTAKE_*``)."""
    return Limits(
        timeout_seconds=settings.pdf_intake_timeout_seconds,
        memory_mb=settings.pdf_intake_memory_mb,
        workers=settings.pdf_intake_workers,
    )


def too_complex(
    name: str, limit: str, limits: Limits, *, page: int | None = None
) -> DocumentTooComplex:
    """The 422 for document ``name`` (or its page ``page``) stopped by ``limit``."""
    label = document_label(name)
    if page is None:
        subject = f"{label} is too complex to check"
    else:
        subject = f"page {page} of {label} is too complex to show"
    if limit == "time":
        message = (
            f"{subject} within {limits.timeout_seconds:g} s: reading it takes longer than a "
            "document may take. Print it to a new PDF (or simplify it: fewer pages, annotations "
            "or objects), or split it into several documents, and upload it again"
        )
    else:
        message = (
            f"{subject} within {limits.memory_mb} MB of memory: reading it needs more "
            "(compressed content that inflates to gigabytes, for instance), or it crashes the "
            "PDF reader. Print it to a new PDF and upload it again"
        )
    return DocumentTooComplex(message, document=name, limit=limit)


class PdfIntake:
    """The reading of uploaded PDFs, each in a worker process under :class:`Limits`.

    Thread-safe.  Workers start at the first document (or :meth:`start`); :meth:`close` stops
    them."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._workers = LimitedWorkers(limits, preload=__name__, name="sealpost-pdf-intake")

    @classmethod
    def from_settings(cls, settings: Settings) -> PdfIntake:
        return cls(limits_from(settings))

    def start(self) -> None:
        """Start the workers now (a server does, so that its first upload is not slower).  A
        failure is logged, not raised: the next document tries again."""
        try:
            self._workers.start()
        except Exception as exc:
            log.warning("signing.pdf_intake_start_failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._workers.close()

    def inspect(self, data: bytes, *, name: str, allow_active_content: bool = False) -> PdfInfo:
        """:func:`~sealpost.signatures.documents.inspect_pdf`, under the limits."""
        value, _ = self._run(name, None, _inspect, bytes(data), name, allow_active_content)
        return PdfInfo(  # the digest and size the evidence states: the server's, not a worker's
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            pages=tuple(PageSize(float(w), float(h)) for w, h in value["pages"]),
            has_signatures=bool(value["has_signatures"]),
            active_content=tuple(Finding(f["kind"], f["text"]) for f in value["active_content"]),
        )

    def anchors(self, data: bytes, *, name: str) -> list[Anchor]:
        """:func:`~sealpost.signatures.documents.find_anchors`, under the limits."""
        value, _ = self._run(name, None, _anchors, bytes(data))
        return [
            Anchor(str(label), int(page), (float(x1), float(y1), float(x2), float(y2)))
            for label, page, (x1, y1, x2, y2) in value
        ]

    def page_png(self, data: bytes, page: int, *, name: str) -> bytes:
        """:func:`~sealpost.signatures.documents.render_page_png`, under the limits."""
        _, png = self._run(name, page, _page_png, bytes(data), page)
        return png

    def _run(self, name: str, page: int | None, task: Any, *args: Any) -> tuple[Any, bytes]:
        try:
            return self._workers.run(task, *args)
        except LimitExceeded as exc:
            log.warning(
                "signing.pdf_intake_limit",
                task=task.__name__.strip("_"),
                limit=exc.limit,
                detail=exc.detail,
                size=len(args[0]),
            )
            raise too_complex(name, exc.limit, self.limits, page=page) from None
        except Refused as exc:
            raise _rebuilt(exc) from None
        except Busy as exc:
            log.warning("signing.pdf_intake_busy", detail=str(exc))
            raise IntakeBusy(
                f"every PDF intake worker is busy reading other documents ({exc}); retry shortly",
                retry_after=max(1, math.ceil(self.limits.timeout_seconds / 4)),
            ) from None


def _rebuilt(refused: Refused) -> InvalidInput:
    """The error a task raised, as its caller would have received it in-process."""
    if refused.code == ActiveContentRefused.code:
        findings = [Finding("", str(text)) for text in refused.members.get("findings") or ()]
        document = str(refused.members.get("document") or "")
        return ActiveContentRefused(refused.message, document=document, findings=findings)
    return InvalidInput(refused.message)


# --- the tasks, run in the workers (so: module level, JSON results) ---------------------------


def _inspect(data: bytes, name: str, allow_active_content: bool) -> tuple[Any, bytes]:
    info = inspect_pdf(data, name=name, allow_active_content=allow_active_content)
    value = {
        "sha256": info.sha256,
        "size": info.size,
        "pages": [[p.width, p.height] for p in info.pages],
        "has_signatures": info.has_signatures,
        "active_content": [f.as_json() for f in info.active_content],
    }
    return value, b""


def _anchors(data: bytes) -> tuple[Any, bytes]:
    return [[a.label, a.page, list(a.box)] for a in find_anchors(data)], b""


def _page_png(data: bytes, page: int) -> tuple[Any, bytes]:
    return None, render_page_png(data, page)
