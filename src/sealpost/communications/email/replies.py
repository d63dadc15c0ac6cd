"""Replies to certified emails: the signed reply address, and what counts as a human reply.

When reply capture is on (the tenant's ``PUT /v1/settings/replies``, or a submission's own
``reply_capture``), each direct email gets ``Reply-To: <sender>, replies+<id>.<tag>@<bounce
domain>``: a reply goes to the sender as before *and* to Sealpost's inbound port, which
records it on the communication (``ReplyReceived``).  The tag is an HMAC of the id under the
server secret the VERP return paths use, with its own label, so nobody who learnt a
communication id can forge a reply to it, and a return path's tag is no reply tag.

A reply that reaches ``replies@`` (or a ``replies+`` address whose tag is wrong) is matched
by its ``In-Reply-To`` / ``References`` to the Message-ID of one of the tenant's
communications instead (RFC 5322 §3.6.4).

Automatic answers (RFC 3834 ``Auto-Submitted`` other than ``no``, ``Precedence: bulk``,
``auto_reply``, ``junk`` or ``list``, vacation responders' own headers, a null return path)
are recorded like any reply but flagged ``automatic``: an out-of-office is not an answer, and
nothing that waits for an answer (a collector's sequence) may stop on it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sealpost.communications.email.addresses import AddressError, idna_domain, split_address
from sealpost.communications.email.mime import header_section, prepend_headers

_TAG = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([0-9a-f]{16})$"
)
PREFIX = "replies"


class ReplyAddresses:
    """``replies+<communication id>.<tag>@<domain>`` and its check."""

    def __init__(self, secret: bytes, domain: str, prefix: str = PREFIX) -> None:
        self.secret = secret
        self.domain = idna_domain(domain)
        self.prefix = prefix

    def _mac(self, communication_id: str) -> str:
        message = b"sealpost-reply\0" + communication_id.encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:16]

    def address(self, communication_id: str) -> str:
        cid = communication_id.lower()
        return f"{self.prefix}+{cid}.{self._mac(cid)}@{self.domain}"

    def _local(self, address: str) -> str | None:
        try:
            local, domain = split_address(address)
            if idna_domain(domain) != self.domain:
                return None
        except AddressError:
            return None
        return local

    def is_reply_address(self, address: str) -> bool:
        """``replies@`` or any ``replies+...@`` of the domain (signed or not)."""
        local = self._local(address)
        if local is None:
            return False
        prefix, _, _ = local.partition("+")
        return prefix.lower() == self.prefix

    def communication(self, address: str) -> str | None:
        """The communication id a genuine (correctly tagged) reply address names, else None."""
        local = self._local(address)
        if local is None:
            return None
        prefix, plus, tag = local.partition("+")
        found = _TAG.match(tag.lower()) if plus and prefix.lower() == self.prefix else None
        if found is None or not hmac.compare_digest(found.group(2), self._mac(found.group(1))):
            return None
        return found.group(1)


@dataclass(frozen=True)
class ReplyCapture:
    """What a submission needs to capture replies: the addresses, and the tenant's switch."""

    addresses: ReplyAddresses
    enabled: Callable[[str], bool]
    """Whether a tenant captures replies by default (``PUT /v1/settings/replies``)."""


_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.ASCII)


def without_field(raw: bytes, name: str) -> tuple[bytes, list[bytes]]:
    """``raw`` without the header field ``name`` (every occurrence, with its folded lines),
    and the removed fields' values; the body and every other byte are left as they were."""
    head = header_section(raw)
    body = raw[len(head) :]
    lines = head.splitlines(keepends=True)
    kept: list[bytes] = []
    removed: list[bytes] = []
    dropping = False
    wanted = name.lower().encode()
    for line in lines:
        if line[:1] in (b" ", b"\t") and line.strip():
            if dropping:
                removed[-1] += line
            else:
                kept.append(line)
            continue
        found = _FIELD.match(line)
        dropping = found is not None and found.group(1).lower() == wanted
        if dropping:
            removed.append(line[found.end() :] if found else line)
        else:
            kept.append(line)
    return b"".join(kept) + body, [r.strip() for r in removed]


def with_reply_to(raw: bytes, keep: str | None, capture: str) -> bytes:
    """``raw`` whose Reply-To names ``keep`` (the sender's earlier Reply-To, else its From)
    and the capture address: the sender still gets the reply, and so does Sealpost.
    RFC 5322 §3.6 allows one Reply-To field only: an earlier one is replaced."""
    stripped, _ = without_field(raw, "Reply-To")
    keep = _LINE_BREAK.sub(" ", keep).strip() if keep else None
    value = f"{keep}, <{capture}>" if keep else f"<{capture}>"
    return prepend_headers(stripped, [("Reply-To", value)])


_LINE_BREAK = re.compile(r"[\r\n\0]+")


def existing_reply_to(raw: bytes) -> str | None:
    """The message's Reply-To value as written (unfolded), if it has exactly one."""
    _, values = without_field(raw, "Reply-To")
    if len(values) != 1:
        return None
    text = re.sub(rb"\r?\n[ \t]+", b" ", values[0]).decode("utf-8", "replace").strip()
    return text or None


AUTO_SUBJECTS = (
    "out of office",
    "out of the office",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina",
    "réponse automatique",
    "reponse automatique",
    "absence du bureau",
    "abwesenheitsnotiz",
    "automatische antwort",
    "risposta automatica",
    "resposta automática",
    "resposta automatica",
)
"""Subject beginnings of vacation responders that set none of the RFC 3834 headers."""


def automatic_reason(
    headers: Iterable[tuple[str, str]], subject: str | None, mail_from: str
) -> str | None:
    """Why this message is an automatic answer (RFC 3834 §5 and the common practice), or
    None for a reply a person wrote."""
    values: dict[str, str] = {}
    for name, value in headers:
        values.setdefault(name.lower(), " ".join(str(value).split()).lower())
    submitted = values.get("auto-submitted")
    if submitted and submitted.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {submitted[:60]}"
    precedence = values.get("precedence")
    if precedence in ("bulk", "auto_reply", "junk", "list"):
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress"):
        if name in values:
            return f"{name}: {values[name][:60]}"
    if values.get("x-precedence") in ("bulk", "auto_reply"):
        return f"X-Precedence: {values['x-precedence']}"
    if not mail_from.strip("<> "):
        return "null return path (RFC 3834 §3.3)"
    text = (subject or "").strip().lower()
    if any(text.startswith(s) for s in AUTO_SUBJECTS):
        return f"subject: {text[:60]}"
    return None
