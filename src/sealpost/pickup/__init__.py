"""Registered pickup: the recipient side of a qualified registered delivery (eIDAS art. 44).

A certified email sent with ``delivery: pickup`` is not relayed: the recipient gets a notice
(no content; where the policy says so, no sender) with a single-use link; on the pickup page
they identify, accept or reject (consent mode), and only then is the content handed over.
Every step is an ETSI EN 319 522-3 evidence record of the communication.  See ``service.py``.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static/pickup"
