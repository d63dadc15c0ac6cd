"""Reminder sequences: ordered steps over channels, templates, send windows, variants."""

from sealpost.sequences import events as _events  # noqa: F401  (registers the kinds)
