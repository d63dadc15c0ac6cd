"""Phone numbers, checked one way for every domain that takes one (the sms domain's ``to``, a
pickup's ``pickup.phone``): E.164 (ITU-T E.164) as Google's libphonenumber metadata knows the
numbering plans, so a number no operator can route (``+1000000000``, a made-up country code)
is a 422 naming the field at submission, not a notice failing every minute afterwards.

A small pure module of the foundation layer: the domains import it, never each other."""

from __future__ import annotations

import phonenumbers

from sealpost.errors import InvalidInput


class InvalidPhoneNumber(InvalidInput):
    """A destination that is not a valid E.164 number (ITU-T E.164; checked with Google's
    libphonenumber metadata): 422 naming the field and the number as sent."""

    code = "invalid_phone_number"
    title = "Not a valid phone number"
    problem_fields = ("field", "number")

    def __init__(self, field: str, number: str, why: str) -> None:
        super().__init__(f"{field}: {number[:40]!r} is not a valid E.164 phone number ({why})")
        self.field = field
        self.number = number[:40]


def checked_number(number: str, field: str = "to") -> str:
    """The number in E.164 form (``+<country><number>``), or :class:`InvalidPhoneNumber`."""
    if not number.startswith("+"):
        raise InvalidPhoneNumber(field, number, "E.164 starts with + and the country code")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(field, number, str(exc)) from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(field, number, "no such number in the numbering plan")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
