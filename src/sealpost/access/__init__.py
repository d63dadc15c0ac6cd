"""The access kit every page a person opens uses: single-use links, page sessions without
cookies, one-time codes by channel (email now, SMS later), counted attempts and lockouts,
keyed by (tenant, subject type, subject id, party id).  See ``service.py``."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
"""The browser side every such page shares (ES modules: the session and its API calls, code
entry, the status line, postMessage to the embedder)."""
STATIC_PATH = "/static/access"
"""Where the API app serves ``STATIC_DIR``: pages import ``/static/access/<module>.js``."""
