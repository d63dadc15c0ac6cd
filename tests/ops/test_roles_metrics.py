"""``/metrics``, ``/readyz`` and JSON logs of real ``sealpost serve`` roles on PostgreSQL.

One ``smtp``, one ``worker`` and one ``api`` process share a PostgreSQL schema and a data
directory, as at scale; a real recipient server answers the deliveries.  Certified mail goes
in by SMTP and by the API; each process's metrics are scraped over HTTP and parsed with
``prometheus_client``'s own parser, before and after: every counter moves by what was sent,
the backlogs drain to 0, the sequencer's histograms have observations.  Every stderr line is
JSON, and the lines about each communication's acceptance, delivery and certificate name it.
"""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mail import RECIPIENT_DOMAIN
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import RecipientServer, free_port

MESSAGES = 3
TOKEN = "metrics-token-0123456789abcdef0123456789"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **headers: str) -> Samples:
    """Every sample of one ``/metrics`` answer, by name and labels."""
    answer = httpx.get(url, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.3)


def send_smtp(port: int, n: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("crm.acme.test")
        code, reply = client.mail("service@acme.test")
        assert code == 250, reply
        code, reply = client.rcpt(f"bob{n}@{RECIPIENT_DOMAIN}")
        assert code == 250, reply
        code, reply = client.data(
            f"From: service@acme.test\r\nTo: bob{n}@{RECIPIENT_DOMAIN}\r\n"
            f"Subject: notice {n}\r\n\r\nNotice {n}.\r\n".encode()
        )
        assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[-1]  # "... queued as <communication id>"


def json_lines(process: SealpostProcess) -> list[dict[str, object]]:
    lines = process.stderr_lines()
    assert lines, "no log line at all"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a stderr line is not JSON: {line!r}") from None
    return parsed


def test_each_role_counts_what_it_does_and_logs_each_communication_by_id(
    tmp_path: Path, keys_dir: Path, postgres_schema_url: str
) -> None:
    submission_port, api_port = free_port(), free_port()
    smtp_ops, worker_ops = free_port(), free_port()
    with RecipientServer() as peer:
        env = serve_env(
            tmp_path / "data",
            keys_dir,
            submission_port,
            SEALPOST_DATABASE_URL=postgres_schema_url,
            SEALPOST_API_PORT=str(api_port),
            SEALPOST_HOSTNAME="sealpost.test",
            SEALPOST_DELIVERY_ROUTES=f'{{"{RECIPIENT_DOMAIN}": "127.0.0.1:{peer.port}"}}',
            SEALPOST_ARCHIVE_OUTGOING="false",
            SEALPOST_LOG_FORMAT="json",
            SEALPOST_LOG_LEVEL="INFO",
            SEALPOST_METRICS_TOKEN=TOKEN,
        )
        roles = {
            role: SealpostProcess(
                tmp_path / role,
                {**env, "SEALPOST_OPS_PORT": str(port)} if port else env,
                submission_port,
                separate_stderr=True,
            )
            for role, port in (("smtp", smtp_ops), ("worker", worker_ops), ("api", 0))
        }
        for process in roles.values():
            process.workdir.mkdir()
        api_key = roles["api"].run("tenant", "create", "acme").strip().splitlines()[-1]
        roles["api"].run("tenant", "smtp-network", "acme", "127.0.0.1/32")
        urls = {
            "smtp": f"http://127.0.0.1:{smtp_ops}",
            "worker": f"http://127.0.0.1:{worker_ops}",
            "api": f"http://127.0.0.1:{api_port}",
        }
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        try:
            for role, process in roles.items():
                process.start(role)
            for role, url in urls.items():  # ready once started: loops settle within seconds
                wait_for(lambda url=url: httpx.get(f"{url}/readyz").status_code == 200, role, 30)
                answer = httpx.get(f"{url}/readyz").json()
                assert answer["status"] == "ready" and answer["not_ready"] == []
                assert {"database", "blob_store", "loops"} <= set(answer["checks"])
            assert httpx.get(f"{urls['smtp']}/healthz").json()["status"] == "alive"
            assert httpx.get(f"{urls['worker']}/readyz").json()["checks"].get("smtp") is None
            assert httpx.get(f"{urls['smtp']}/readyz").json()["checks"]["smtp"] == "ok"
            # the API port serves /metrics only with the token
            assert httpx.get(f"{urls['api']}/metrics").status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert httpx.get(f"{urls['api']}/metrics", headers=wrong).status_code == 401

            before = {
                "smtp": scrape(f"{urls['smtp']}/metrics"),
                "worker": scrape(f"{urls['worker']}/metrics"),
                "api": scrape(f"{urls['api']}/metrics", **bearer),
            }
            for samples in before.values():
                assert value(samples, "sealpost_backlog_query_ok", query="certificates") == 1
            sent = [send_smtp(submission_port, n) for n in range(MESSAGES)]
            answer = httpx.post(
                f"{urls['api']}/v1/communications",
                headers={"Authorization": f"Bearer {api_key}"},
                json={
                    "from": "service@acme.test",
                    "to": [f"carol@{RECIPIENT_DOMAIN}"],
                    "subject": "API notice",
                    "text": "Notice.",
                },
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            sent.append(answer.json()["communications"][0]["id"])

            accepted = "sealpost_communications_accepted_total"

            def moved(role: str, channel: str, **headers: str) -> float:
                now = scrape(f"{urls[role]}/metrics", **headers)
                return value(now, accepted, channel=channel) - value(
                    before[role], accepted, channel=channel
                )

            # counted by the writer just after the replies it resolves: within moments
            wait_for(lambda: moved("smtp", "smtp") >= MESSAGES, "smtp acceptances", 10)
            wait_for(lambda: moved("api", "api", **bearer) >= 1, "api acceptance", 10)
            assert moved("smtp", "smtp") == MESSAGES and moved("api", "api", **bearer) == 1
            assert moved("api", "smtp", **bearer) == 0  # process-local counters
            assert moved("smtp", "api") == 0

            def drained() -> bool:
                now = scrape(f"{urls['worker']}/metrics")
                return (
                    value(now, "sealpost_certificates_issued_total") >= MESSAGES + 1
                    and value(now, "sealpost_certificate_backlog") == 0
                    and value(now, "sealpost_delivery_queue_depth") == 0
                )

            wait_for(drained, "every message delivered and certified", timeout=180)
            worker = scrape(f"{urls['worker']}/metrics")
            delivered = "sealpost_delivery_attempts_total"
            assert (
                value(worker, delivered, outcome="delivered")
                - value(before["worker"], delivered, outcome="delivered")
                == MESSAGES + 1
            )
            assert len(peer.received) == MESSAGES + 1
            assert value(worker, "sealpost_certificate_oldest_waiting_age_seconds") == 0
            assert value(worker, "sealpost_loop_up", loop="delivery") == 1
            assert value(worker, "sealpost_info", role="worker", version="0.1.0") == 1

            # whichever process held the sequencer lease sealed: its histograms observed
            after = {
                "smtp": scrape(f"{urls['smtp']}/metrics"),
                "worker": worker,
                "api": scrape(f"{urls['api']}/metrics", **bearer),
            }
            batches = sum(value(s, "sealpost_seal_batch_records_count") for s in after.values())
            records = sum(value(s, "sealpost_seal_batch_records_sum") for s in after.values())
            timed = sum(value(s, "sealpost_seal_batch_seconds_count") for s in after.values())
            assert batches >= 1 and timed == batches
            # each communication: SubmissionAcceptance, delivery, CertificateIssued at least
            assert records >= 3 * len(sent)
            wait_for(
                lambda: (
                    value(scrape(f"{urls['worker']}/metrics"), "sealpost_ledger_unsealed_records")
                    == 0
                ),
                "every record sealed",
            )
        finally:
            for process in roles.values():
                process.stop()

    logs = {role: json_lines(process) for role, process in roles.items()}
    for communication_id in sent:
        about = {
            role: {
                str(line["event"])
                for line in lines
                if line.get("communication_id") == communication_id
            }
            for role, lines in logs.items()
        }
        acceptor = "api" if communication_id == sent[-1] else "smtp"
        assert "submission.accepted" in about[acceptor], (communication_id, about)
        assert {"delivery.attempt", "certificate.issued"} <= about["worker"], (
            communication_id,
            about,
        )
    for lines in logs.values():  # the lines about a communication name its tenant too
        for line in lines:
            if "communication_id" in line:
                assert line.get("tenant_id"), line
