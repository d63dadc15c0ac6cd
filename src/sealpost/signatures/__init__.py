"""Electronic signature processes: documents, signers, identification, PAdES signatures, the
audit trail, and the signing page.

Importing the package registers its events (``events.py``) with the events registry.
"""

from sealpost.signatures import events as _events  # noqa: F401  (registers the kinds)
