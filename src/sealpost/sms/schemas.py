"""The SMS API's request and response bodies (pydantic at the boundary only)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictBool

from sealpost.api.text import MultiLine, SingleLine

MAX_TEXT = 5000
"""Characters of one SMS text (75 UCS-2 segments at most; operators bill each)."""


class SmsRequest(BaseModel):
    to: SingleLine = Field(
        max_length=40, description="The destination in E.164 form, e.g. +34600123456."
    )
    text: MultiLine = Field(min_length=1, max_length=MAX_TEXT)
    sender: SingleLine | None = Field(
        None,
        min_length=1,
        max_length=16,
        pattern=r"^(\+[0-9]{6,15}|[A-Za-z0-9 ._-]{1,11})$",
        description="Originator: an alphanumeric sender id (11 at most) or an E.164 number; "
        "default SMS_DEFAULT_SENDER.",
    )
    details: dict[str, SingleLine] = Field(
        default_factory=dict,
        max_length=20,
        description="Your own references (case number...), kept in the evidence.",
    )
    respect_opt_out: StrictBool = Field(
        False,
        description="true: refuse (409 sms_opted_out) a number that answered STOP to one of "
        "your SMS (GET /v1/sms/opt-outs); false (default): a certified notice goes out anyway.",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [{"to": "+34600123456", "text": "Your claim 1234 was decided: see..."}]
        }
    }


class PreviewRequest(BaseModel):
    text: MultiLine = Field(min_length=1, max_length=MAX_TEXT)


class Preview(BaseModel):
    encoding: str = Field(description="gsm7 (GSM 03.38, 7-bit) or ucs2.")
    units: int = Field(description="Septets (gsm7, extension characters count 2) or UTF-16 units.")
    segments: int
    parts: list[str] = Field(description="The text of each segment, as the operator bills it.")


class SegmentOut(BaseModel):
    number: int = Field(description="1-based, in reading order.")
    state: str = Field(description="pending, accepted, or the final receipt's state.")
    operator_message_id: str | None
    operator_status: str | None = Field(description="The final receipt's error code (err:).")
    reported_at: str | None = Field(description="The receipt's done date (UTC).")
    report_sha256: str | None = Field(description="SHA-256 of the raw receipt that decided it.")


class SmsOut(BaseModel):
    id: str
    status: str
    to: str
    sender: str
    encoding: str
    segment_count: int
    text_sha256: str | None = Field(
        description="SHA-256 of the text in UTF-8; null when it carried a one-time code or "
        "single-use link: the evidence then seals sha256(nonce ‖ 0x00 ‖ text) (details.digest), "
        "whose nonce only the operator holds."
    )
    submitted_at: str
    updated_at: str
    relayed_at: str | None
    final_at: str | None
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    replayed: bool = False


class SmsDetail(SmsOut):
    text: str | None = Field(
        description="The text sent; null when it carried a one-time code or single-use link "
        "(text_withheld): its digest is in the evidence, the operator keeps the text."
    )
    text_withheld: bool = False
    details: dict[str, Any]
    segments: list[SegmentOut]
    evidence: list[dict[str, Any]] = Field(
        description="Every evidence record in order: record id, event, time, bundle path."
    )
    certificates: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Every issued certificate version: version, sha256, size, issued_at, "
        "record_id (its CertificateIssued record) and the path to download it.",
    )


class SmsReplyOut(BaseModel):
    id: str
    received_at: str
    phone: str = Field(description="The handset that answered (E.164).")
    destination: str = Field(description="The number or sender id it answered to.")
    text: str
    text_sha256: str = Field(description="SHA-256 of the text in UTF-8 (the record's content).")
    opt_out: bool = Field(
        description="The text was an opt-out keyword (STOP, UNSUBSCRIBE, BAJA...)."
    )
    provider: str
    raw_sha256: str = Field(description="SHA-256 of the operator's PDU or request body.")
    record_id: str
    evidence: str


class SmsReplyList(BaseModel):
    sms_id: str
    items: list[SmsReplyOut]


class OptOutOut(BaseModel):
    phone: str
    opted_out_at: str
    keyword: str
    sms_id: str = Field(description="The SMS the STOP answered.")
    reply_id: str


class OptOutPage(BaseModel):
    items: list[OptOutOut]
    next_after: str | None = Field(description="Pass as ?after= for the next page.")
