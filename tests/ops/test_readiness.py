"""``/readyz`` of real ``sealpost serve`` processes: 503 naming what is missing, 200 again once
it is back.

The database goes away under a running ``worker`` and ``api`` (a TCP forwarder between them
and the real PostgreSQL is cut, then restored on the same address): both answer 503 naming
the database, their ``/metrics`` still answers (the failed backlog queries reported as
``sealpost_backlog_query_ok 0``), and both are ready again once it is back.  A worker that
publishes to RabbitMQ is not ready while the broker does not answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sealpost.app import Sealpost
from tests.conftest import require_service
from tests.support.amqp import AMQP_URL, rabbitmq_available
from tests.support.serve import SealpostProcess, serve_env
from tests.support.smtp_peer import free_port
from tests.support.tcp_proxy import TcpProxy

__all__ = ["rabbitmq_available"]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.3)


def readyz(url: str) -> tuple[int, dict[str, object]]:
    answer = httpx.get(f"{url}/readyz", timeout=15)
    return answer.status_code, answer.json()


def test_a_role_is_not_ready_while_its_database_is_unreachable(
    tmp_path: Path, keys_dir: Path, postgres_schema_url: str
) -> None:
    api_port, worker_ops = free_port(), free_port()
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        url = postgres_schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert url != postgres_schema_url
        env = serve_env(
            tmp_path / "data",
            keys_dir,
            free_port(),
            SEALPOST_DATABASE_URL=url,
            SEALPOST_API_PORT=str(api_port),
        )
        worker = SealpostProcess(
            tmp_path / "worker", {**env, "SEALPOST_OPS_PORT": str(worker_ops)}, 0
        )
        api = SealpostProcess(tmp_path / "api", env, 0)
        for process in (worker, api):
            process.workdir.mkdir()
        urls = [f"http://127.0.0.1:{worker_ops}", f"http://127.0.0.1:{api_port}"]
        try:
            worker.start("worker")
            api.start("api")
            for target in urls:
                wait_for(lambda target=target: readyz(target)[0] == 200, f"{target} ready")

            proxy.cut()
            for target in urls:
                wait_for(lambda target=target: readyz(target)[0] == 503, f"{target} not ready")
                status, body = readyz(target)
                assert status == 503 and body["status"] == "not ready"
                assert "database" in body["not_ready"]  # type: ignore[operator]
                assert body["checks"]["blob_store"] == "ok"  # type: ignore[index]
            metrics = httpx.get(f"{urls[0]}/metrics", timeout=30)
            assert metrics.status_code == 200
            ok = {
                s.labels["query"]: s.value
                for family in text_string_to_metric_families(metrics.text)
                for s in family.samples
                if s.name == "sealpost_backlog_query_ok"
            }
            assert ok and set(ok.values()) == {0.0}, ok
            assert httpx.get(f"{urls[0]}/healthz").status_code == 200  # alive: wait, not restart

            proxy.restore()
            for target in urls:
                wait_for(lambda target=target: readyz(target)[0] == 200, f"{target} ready again")
        finally:
            worker.stop()
            api.stop()


def test_a_dispatcher_is_not_ready_while_its_broker_is_down(
    tmp_path: Path, keys_dir: Path, rabbitmq_available: str | None
) -> None:
    if rabbitmq_available:
        require_service("RabbitMQ", rabbitmq_available)
    nothing = free_port()  # nothing listens there: a broker that is down
    ops_down, ops_up = free_port(), free_port()
    env = serve_env(tmp_path / "data", keys_dir, free_port())
    down = SealpostProcess(
        tmp_path / "down",
        {
            **env,
            "SEALPOST_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{nothing}/",
            "SEALPOST_OPS_PORT": str(ops_down),
        },
        0,
    )
    up_env = {**env, "SEALPOST_AMQP_URL": AMQP_URL, "SEALPOST_OPS_PORT": str(ops_up)}
    processes = [down, SealpostProcess(tmp_path / "up", up_env, 0)]
    for process in processes:
        process.workdir.mkdir()
    try:
        for process in processes:
            process.start("dispatcher")  # the role that publishes to the broker
        target = f"http://127.0.0.1:{ops_down}"
        wait_for(lambda: "broker" in readyz(target)[1]["checks"], "the broker checked")  # type: ignore[operator]
        time.sleep(2)  # whatever settles, the broker stays down
        status, body = readyz(target)
        assert status == 503 and "broker" in body["not_ready"], body  # type: ignore[operator]
        assert body["checks"]["database"] == "ok"  # type: ignore[index]
        up = f"http://127.0.0.1:{ops_up}"
        wait_for(lambda: readyz(up)[0] == 200, "the dispatcher with its broker ready")
        assert readyz(up)[1]["checks"]["broker"] == "ok"  # type: ignore[index]
    finally:
        for process in processes:
            process.stop()


def test_a_flood_of_probes_during_a_hang_runs_one_check_at_a_time(sealpost: Sealpost) -> None:
    """``/readyz`` is anonymous on the API port: 50 probes at once while the database hangs
    must not become 50 round trips and 50 stuck threads.  One round of checks runs, the others
    get its answer; a check still hanging is waited on again, never started twice; once the
    database answers, the next round (after the 1 s cache) says ready."""
    import threading

    from sealpost.ops.readiness import Readiness

    calls: list[float] = []
    hang = threading.Event()

    class Hanging(Readiness):
        def _database(self) -> None:
            calls.append(time.monotonic())
            hang.wait(30)

    readiness = Hanging(sealpost, timeout=0.5)
    readiness.started.set()
    answers: list[bool] = []
    probes = [
        threading.Thread(target=lambda: answers.append(readiness.check().ready)) for _ in range(50)
    ]
    for probe in probes:
        probe.start()
    for probe in probes:
        probe.join(10)
    assert answers == [False] * 50
    assert len(calls) == 1  # one database round trip for fifty probes
    time.sleep(1.1)  # past the cache: still hanging, the same check is waited on again
    report = readiness.check()
    assert not report.ready and "no answer" in report.checks["database"]
    assert len(calls) == 1
    hang.set()
    time.sleep(1.1)
    report = readiness.check()  # the hung check finished: this round starts a new one
    assert len(calls) == 2
    assert report.ready, report.checks
