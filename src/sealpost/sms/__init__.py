"""Certified SMS: submission to an operator (SMPP 3.4 or an HTTP gateway), delivery receipts
as evidence, and the ``SmsSender`` port other domains send notices and codes through."""

from sealpost.sms import events as _events  # noqa: F401  (registers the kinds)
