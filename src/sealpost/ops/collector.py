"""Backlog gauges, read from the shared database at scrape time (a Prometheus collector).

Counters and histograms (:mod:`sealpost.metrics`) say what *this* process did; backlogs are
facts of the database every replica shares, so each scrape reads them afresh with a few
indexed, bounded queries (counts stop at ``SEALPOST_METRICS_BACKLOG_CAP``).  A query that
fails (the database is down) does not fail the scrape: its gauges are left out and
``sealpost_backlog_query_ok{query}`` says 0, so an alert can tell "no backlog" from "no
answer".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import sealpost
from sealpost.app import Sealpost
from sealpost.logging import get_logger

log = get_logger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Prometheus text exposition format (prometheus_client's latest)."""


def _age(moment: datetime | None, now: datetime) -> float:
    """Seconds since ``moment``; 0 when there is nothing waiting."""
    return 0.0 if moment is None else max((now - moment).total_seconds(), 0.0)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class BacklogCollector:
    """The backlog gauges of one Sealpost (its database), the role and its loops."""

    def __init__(self, sp: Sealpost, role: str) -> None:
        self.sp = sp
        self.role = role

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "sealpost_info", "This process: its role and version.", labels=["role", "version"]
        )
        info.add_metric([self.role, sealpost.__version__], 1)
        yield info
        yield from self._loops()
        ok = GaugeMetricFamily(
            "sealpost_backlog_query_ok",
            "1 when the backlog query answered at this scrape, 0 when it failed (its gauges "
            "are then absent).",
            labels=["query"],
        )
        for name, query in self._queries():
            try:
                metrics = list(query())
            except Exception as exc:  # the database is down: report it, do not fail
                log.warning("metrics.backlog_query_failed", query=name, error=repr(exc))
                ok.add_metric([name], 0)
                continue
            ok.add_metric([name], 1)
            yield from metrics
        yield ok

    def _loops(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "sealpost_loop_up",
            "1 when this background loop of this process runs and is not failing.",
            labels=["loop"],
        )
        restarts = CounterMetricFamily(
            "sealpost_loop_restarts", "Restarts of this background loop.", labels=["loop"]
        )
        for name, health in sorted(dict(self.sp.supervisor.health).items()):
            up.add_metric([name], float(health.state == "running" and not health.failing()))
            restarts.add_metric([name], health.restarts)
        yield up
        yield restarts

    def _queries(self) -> list[tuple[str, Callable[[], Iterable[Metric]]]]:
        return [
            ("delivery_queue", self._delivery_queue),
            ("ledger", self._ledger),
            ("events", self._events),
            ("webhooks", self._webhooks),
            ("certificates", self._certificates),
        ]

    @property
    def _cap(self) -> int:
        return self.sp.settings.metrics_backlog_cap

    def _delivery_queue(self) -> Iterator[Metric]:
        yield _gauge(
            "sealpost_delivery_queue_depth",
            "Email communications queued for delivery (due now or waiting to retry).",
            self.sp.communications.queue_depth(self._cap),
        )

    def _ledger(self) -> Iterator[Metric]:
        storage, now = self.sp.log_storage, datetime.now(UTC)
        yield _gauge(
            "sealpost_ledger_unsealed_records",
            "Evidence records committed and not yet in a sealed tree head.",
            storage.pending_count(self._cap),
        )
        yield _gauge(
            "sealpost_ledger_oldest_unsealed_age_seconds",
            "How long the oldest unsealed record has waited for its seal (0: none waits).",
            _age(storage.oldest_pending_time(), now),
        )

    def _events(self) -> Iterator[Metric]:
        outbox, now = self.sp.outbox, datetime.now(UTC)
        backlog = outbox.backlog(self._cap)
        yield _gauge(
            "sealpost_events_unpositioned",
            "Outbox events not yet given their position by the events dispatcher.",
            backlog["unpositioned"],
        )
        yield _gauge(
            "sealpost_events_lag_seconds",
            "Age of the oldest outbox event not yet positioned (published neither to RabbitMQ "
            "nor to webhooks); 0: none waits.",
            _age(outbox.oldest_unpositioned_time(), now),
        )
        if self.sp.settings.amqp_url:
            yield _gauge(
                "sealpost_events_amqp_lag",
                "Positioned events not yet confirmed by RabbitMQ.",
                backlog["last_position"] - backlog["amqp_cursor"],
            )

    def _webhooks(self) -> Iterator[Metric]:
        count, first_due = self.sp.webhook_log.pending_backlog(self._cap)
        yield _gauge(
            "sealpost_webhook_backlog",
            "Webhook deliveries not yet done (due now or waiting to retry).",
            count,
        )
        yield _gauge(
            "sealpost_webhook_overdue_seconds",
            "How late the most overdue pending webhook delivery is (0: none is overdue).",
            _age(first_due, datetime.now(UTC)),
        )

    def _certificates(self) -> Iterator[Metric]:
        count, oldest = self.sp.communications.certificate_backlog(self._cap)
        yield _gauge(
            "sealpost_certificate_backlog",
            "Communications in a final state waiting for their evidence certificate.",
            count,
        )
        yield _gauge(
            "sealpost_certificate_oldest_waiting_age_seconds",
            "How long the oldest communication has waited for its certificate (0: none).",
            _age(oldest, datetime.now(UTC)),
        )


class _Everything:
    """This process's own metrics (default registry) followed by the backlog gauges."""

    def __init__(self, backlog: BacklogCollector) -> None:
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.backlog.collect()


def exposition(sp: Sealpost, role: str) -> bytes:
    """The ``/metrics`` body: Prometheus text format (``CONTENT_TYPE``)."""
    return generate_latest(_Everything(BacklogCollector(sp, role)))
