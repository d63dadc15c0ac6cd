"""Legal deadlines: business-day calendars per ISO 3166-2 region and the terms counted on them.

A shared kit (the layer of ``certificates`` and ``access``): communications, sequences and
pickup count their terms with it; it imports no domain.
"""

from sealpost.deadlines import events as _events  # noqa: F401  (registers the kinds)
