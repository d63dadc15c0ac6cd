"""Operations: Prometheus metrics, readiness, and the small HTTP listener of roles without one.

``collector`` reads the backlogs from the database at scrape time, ``readiness`` says whether
this process can do its job, ``server`` serves both (and liveness) on ``SEALPOST_OPS_PORT``.
The API app serves the same ``/readyz`` and ``/metrics`` on its own port.  Metric names and
the scrape set-up: ``docs/monitoring.md``.
"""

from sealpost.ops.collector import CONTENT_TYPE, exposition
from sealpost.ops.readiness import Readiness
from sealpost.ops.server import OpsServer, start_ops_listener

__all__ = ["CONTENT_TYPE", "OpsServer", "Readiness", "exposition", "start_ops_listener"]
