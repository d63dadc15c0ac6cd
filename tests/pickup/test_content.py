"""What the pickup page shows of a message: text only (the sender's HTML is never rendered),
attachments by index, each with its exact bytes."""

from __future__ import annotations

from email.message import EmailMessage

from sealpost.pickup import content


def _html_only() -> bytes:
    msg = EmailMessage()
    msg["From"] = "claims@acme.test"
    msg["To"] = "jane@recipient.test"
    msg["Subject"] = "Decision"
    msg.set_content(
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><p>Hello &amp; welcome</p><img src=https://tracker.example/pixel></body></html>",
        subtype="html",
    )
    msg.add_attachment(
        b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="data.bin"
    )
    return msg.as_bytes()


def test_html_is_shown_as_its_text_without_script_style_or_remote_images() -> None:
    text = content.text_of(_html_only())
    assert text == "Hello & welcome"
    assert "alert" not in text and "color" not in text and "tracker" not in text


def test_attachments_are_listed_and_given_back_byte_for_byte() -> None:
    raw = _html_only()
    (listed,) = content.attachments(raw)
    assert (listed.index, listed.filename, listed.size) == (0, "data.bin", 8)
    found = content.attachment(raw, 0)
    assert found is not None and found[1] == b"\x00\x01binary"
    assert content.attachment(raw, 1) is None and content.attachment(raw, -1) is None


def test_a_message_without_parts_has_its_text_and_no_attachments() -> None:
    raw = b"From: a@b.test\r\nSubject: x\r\n\r\nJust text.\r\n"
    assert content.text_of(raw).strip() == "Just text."
    assert content.attachments(raw) == []
