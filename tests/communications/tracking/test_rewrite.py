"""The tracked copy: only the HTML part changes, only http(s) links are redirected, and every
other byte of the message is written back as received."""

from __future__ import annotations

import base64
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import SMTP

from sealpost.communications.tracking.rewrite import link_target, rewrite_html, rewrite_message

PIXEL = "https://sp.test/t/o/PIXELTOKEN.gif"


def _link(position: int, url: str) -> str:
    return f"https://sp.test/t/c/LINK{position}"


def _message(html: str | None, *, html_attachment: bool = False, cte: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Acme <offers@acme.test>"
    msg["To"] = "ana@recipient.test"
    msg["Subject"] = "Offer 42"
    msg.set_content("Plain: https://shop.acme.test/offer\n")
    if html is not None:
        msg.add_alternative(html, subtype="html", cte=cte)
    msg.add_attachment(b"%PDF-1.4 terms", maintype="application", subtype="pdf", filename="t.pdf")
    if html_attachment:
        msg.add_attachment(
            b'<a href="https://x.test/">x</a>', maintype="text", subtype="html", filename="a.html"
        )
    return msg.as_bytes(policy=SMTP)


def _parts(raw: bytes) -> list[Message]:
    return [p for p in message_from_bytes(raw).walk() if not p.is_multipart()]


def test_only_the_html_part_changes_and_everything_else_is_byte_exact() -> None:
    raw = _message('<html><body><a href="https://shop.acme.test/offer">go</a></body></html>\n')
    tracked = rewrite_message(raw, pixel_url=PIXEL, link_url=_link)
    assert tracked is not None and tracked.pixel
    assert [(k.position, k.url) for k in tracked.links] == [(1, "https://shop.acme.test/offer")]
    head, _, _ = raw.partition(b"\r\n\r\n")
    assert tracked.raw.startswith(head + b"\r\n\r\n")  # the header section as received
    assert b"\n" not in tracked.raw.replace(b"\r\n", b"")  # CRLF kept
    before, after = _parts(raw), _parts(tracked.raw)
    assert [p.get_content_type() for p in before] == [p.get_content_type() for p in after]
    for old, new in zip(before, after, strict=True):
        if old.get_content_type() != "text/html":
            assert old.get_payload(decode=True) == new.get_payload(decode=True)
    html = after[1].get_payload(decode=True).decode()
    assert '<a href="https://sp.test/t/c/LINK1">go</a>' in html
    assert html.index(PIXEL) < html.index("</body>")


def test_plain_text_only_is_never_rewritten() -> None:
    assert rewrite_message(_message(None), pixel_url=PIXEL, link_url=_link) is None
    plain = b"From: a@acme.test\r\nTo: b@r.test\r\n\r\nSee https://shop.acme.test/\r\n"
    assert rewrite_message(plain, pixel_url=PIXEL, link_url=_link) is None


def test_an_html_attachment_is_not_touched() -> None:
    raw = _message("<p>hello</p>\n", html_attachment=True)
    tracked = rewrite_message(raw, pixel_url=None, link_url=_link)
    assert tracked is None  # the body has no link; the attached page is not the message


def test_a_base64_html_part_stays_base64() -> None:
    raw = _message('<p><a href="http://acme.test/a">a</a></p>\n', cte="base64")
    tracked = rewrite_message(raw, pixel_url=PIXEL, link_url=_link)
    assert tracked is not None
    (html,) = [p for p in _parts(tracked.raw) if p.get_content_type() == "text/html"]
    assert html["Content-Transfer-Encoding"] == "base64"
    decoded = base64.b64decode(html.get_payload())
    assert b"https://sp.test/t/c/LINK1" in decoded and PIXEL.encode() in decoded


def test_which_links_are_tracked() -> None:
    html = (
        '<a href="https://a.test/x?a=1&amp;b=2">1</a> <A HREF=http://b.test/é>2</A> '
        '<a href=\'mailto:x@acme.test\'>m</a> <a href="#top">t</a> <a href="/rel">r</a> '
        '<a data-href="https://no.test/" title="x">d</a> <a href="javascript:alert(1)">j</a> '
        '<a href=" https://c.test/\n">3</a> <area href="https://d.test/"> <a>none</a>'
    )
    new, links, pixel = rewrite_html(html, pixel_url=None, link_url=_link)
    assert not pixel
    assert [k.url for k in links] == [
        "https://a.test/x?a=1&b=2",
        "http://b.test/%C3%A9",
        "https://c.test/",
        "https://d.test/",
    ]
    for kept in ("mailto:x@acme.test", "#top", "/rel", 'data-href="https://no.test/"'):
        assert kept in new
    assert "javascript:alert(1)" in new  # never redirected to, never tracked
    assert new.count("https://sp.test/t/c/LINK") == 4


def test_the_pixel_goes_before_the_last_body_end_or_at_the_end() -> None:
    with_body, _, _ = rewrite_html("<body>x</BODY >", pixel_url=PIXEL, link_url=None)
    assert with_body.startswith("<body>x<img src=") and with_body.endswith("</BODY >")
    bare, _, _ = rewrite_html("<p>x</p>", pixel_url=PIXEL, link_url=None)
    assert bare.startswith("<p>x</p><img src=")


def test_urls_that_cannot_be_followed_safely_are_not_tracked() -> None:
    assert link_target("https://a.test/" + "x" * 3000) is None
    assert link_target("https://a.test/\x00") is None
    assert link_target("https:///nohost") is None
    assert link_target("ftp://a.test/") is None
    assert link_target("HTTPS://A.test/ok") == "HTTPS://A.test/ok"


def test_an_attached_email_is_never_rewritten() -> None:
    """A forwarded or attached message (message/rfc822) is a document the sender attached:
    its HTML gets no pixel and its links stay its own, whatever its parts' dispositions."""
    inner = EmailMessage()
    inner["From"] = "bank@bank.test"
    inner["To"] = "offers@acme.test"
    inner["Subject"] = "Statement"
    inner.set_content("See https://bank.test/statement\n")
    inner.add_alternative(
        '<html><body><a href="https://bank.test/statement">statement</a></body></html>\n',
        subtype="html",
    )
    outer = EmailMessage()
    outer["From"] = "Acme <offers@acme.test>"
    outer["To"] = "ana@recipient.test"
    outer["Subject"] = "Offer 42"
    outer.set_content("Plain\n")
    outer.add_alternative(
        '<html><body><a href="https://shop.acme.test/offer">go</a></body></html>\n',
        subtype="html",
    )
    outer.add_attachment(inner)  # message/rfc822, Content-Disposition: attachment
    raw = outer.as_bytes(policy=SMTP)
    tracked = rewrite_message(raw, pixel_url=PIXEL, link_url=_link)
    assert tracked is not None
    assert [k.url for k in tracked.links] == ["https://shop.acme.test/offer"]
    assert tracked.raw.count(b"PIXELTOKEN") == 1
    attached = inner.as_bytes(policy=SMTP)
    body = attached.partition(b"\r\n\r\n")[2]
    assert body and body in tracked.raw  # the attached message, byte for byte
    # an attached message alone (no HTML of the sender's own) is left as it is
    forward = EmailMessage()
    forward["From"] = "Acme <offers@acme.test>"
    forward["To"] = "ana@recipient.test"
    forward["Subject"] = "Fwd: Statement"
    forward.set_content("Forwarded below.\n")
    forward.add_attachment(inner)
    assert rewrite_message(forward.as_bytes(policy=SMTP), pixel_url=PIXEL, link_url=_link) is None
