"""The process-local Prometheus metrics: counted and timed where the event happens.

Counters and histograms live in the default ``prometheus_client`` registry of the process
that observed them (each ``sealpost serve`` role and each SMTP acceptor process is its own
scrape target).  Backlogs (queue depth, unsealed records, events lag, certificates waiting)
are not counted here: they are facts of the shared database, read at scrape time by
:mod:`sealpost.ops.collector`.  Names, types and labels are documented in
``docs/monitoring.md`` (one name per idea: the same words as the log events).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ACCEPTED = Counter(
    "sealpost_communications_accepted",
    "Communications accepted (SubmissionAcceptance committed), by the channel they came in "
    "by: smtp, api, rewrite (certify address) or sms.",
    ["channel"],
)
REJECTED = Counter(
    "sealpost_submissions_rejected",
    "Submissions refused with SubmissionRejection evidence, by channel.",
    ["channel"],
)
DELIVERY_ATTEMPTS = Counter(
    "sealpost_delivery_attempts",
    "Email delivery attempts concluded, by outcome: delivered, relayed, deferred (4xx or no "
    "answer: retried) or failed (5xx, NonDelivery).",
    ["outcome"],
)
CERTIFICATES_ISSUED = Counter(
    "sealpost_certificates_issued",
    "Evidence certificates (PDF) issued by this process.",
)
SEAL_BATCH_RECORDS = Histogram(
    "sealpost_seal_batch_records",
    "Records integrated per sealed batch (one signed tree head each).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000),
)
SEAL_BATCH_SECONDS = Histogram(
    "sealpost_seal_batch_seconds",
    "Time to seal one batch: Merkle append, seal signature, RFC 3161 timestamp, commit.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
