"""Certified communications: one per recipient, submitted by SMTP or the API, delivered with
evidence of every step, and their sealed evidence certificates.  ``email/`` is the channel.

Importing the package registers its events (``events.py``) with the events registry.
"""

from sealpost.communications import events as _events  # noqa: F401  (registers the kinds)
