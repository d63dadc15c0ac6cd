"""The pure parts of reply capture: the Reply-To rewrite and what counts as automatic."""

from __future__ import annotations

import pytest

from sealpost.communications.email.replies import (
    automatic_reason,
    existing_reply_to,
    with_reply_to,
)

BODY = b"Line one\r\n\r\nReply-To: not-a-header@body.test\r\n"


def test_an_earlier_folded_reply_to_is_replaced_and_kept_first_and_the_body_is_untouched() -> None:
    raw = b"From: a@acme.test\r\nReply-To: Desk\r\n <desk@acme.test>\r\nSubject: x\r\n\r\n" + BODY
    assert existing_reply_to(raw) == "Desk <desk@acme.test>"
    out = with_reply_to(raw, existing_reply_to(raw), "replies+id.tag@b.test")
    assert out.startswith(b"Reply-To: Desk <desk@acme.test>, <replies+id.tag@b.test>\r\n")
    assert out.count(b"Reply-To:") == 2  # ours, and the body's line (not a header)
    assert out.endswith(b"Subject: x\r\n\r\n" + BODY)
    assert b"desk@acme.test>\r\nFrom" not in out


def test_without_an_earlier_reply_to_the_from_address_is_kept() -> None:
    raw = b"From: a@acme.test\nSubject: x\n\nbody\n"
    out = with_reply_to(raw, "a@acme.test", "replies+id.tag@b.test")
    assert out == b"Reply-To: a@acme.test, <replies+id.tag@b.test>\n" + raw


@pytest.mark.parametrize(
    ("headers", "subject", "mail_from", "automatic"),
    [
        ([("Auto-Submitted", "auto-replied")], "Re: x", "b@c.test", True),
        ([("Auto-Submitted", "no")], "Re: x", "b@c.test", False),
        ([("Precedence", "auto_reply")], "Re: x", "b@c.test", True),
        ([("X-Autoreply", "yes")], "Re: x", "b@c.test", True),
        ([], "Respuesta automática: x", "b@c.test", True),
        ([], "Re: out of office hours?", "b@c.test", False),
        ([], "Re: x", "<>", True),
        ([], "Re: x", "b@c.test", False),
    ],
)
def test_what_counts_as_an_automatic_answer(
    headers: list[tuple[str, str]], subject: str, mail_from: str, automatic: bool
) -> None:
    assert (automatic_reason(headers, subject, mail_from) is not None) is automatic
