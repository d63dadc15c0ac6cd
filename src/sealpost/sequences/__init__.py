"""Reminder sequences: ordered steps over channels, templates, send windows, variants."""
