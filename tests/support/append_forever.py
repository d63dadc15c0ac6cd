"""Child process for the restart test: appends records and seals them until it is killed.

Settings come from the SEALPOST_* environment.  After each committed append it prints the
committed record ids, so the parent knows exactly what was promised before the kill.
"""

from __future__ import annotations

import sys

from sealpost.app import build
from sealpost.config import Settings
from sealpost.logging import configure_logging
from tests.support.records import submission


def main() -> None:
    tenant_id = sys.argv[1]
    settings = Settings()
    configure_logging(settings.log_level)
    sp = build(settings)
    sp.start_background()
    n = 0
    while True:
        batch = [submission(tenant_id, n + i) for i in range(25)]
        sp.log_storage.append(batch)
        n += len(batch)
        print("committed", " ".join(r.id for r in batch), flush=True)


if __name__ == "__main__":
    main()
