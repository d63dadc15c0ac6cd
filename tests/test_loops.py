"""Background loops are supervised: a loop that fails is restarted with backoff, its failure
shows in health, and a periodic loop survives a failing round (issue: sealing must never stop
silently)."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from sealpost.loops import Loop, LoopHealth, Supervisor, periodic, supervise, while_due
from tests.support.records import submission


def _wait(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.02)
    return False


def test_a_loop_that_raises_is_restarted_with_backoff_until_it_runs() -> None:
    starts: list[float] = []

    def flaky(stop: threading.Event) -> None:
        starts.append(time.monotonic())
        if len(starts) <= 3:
            raise ConnectionError("database restarting")
        stop.wait()

    stop = threading.Event()
    health = LoopHealth("flaky")
    thread = threading.Thread(
        target=supervise, args=(Loop("flaky", flaky), stop, health), kwargs={"first_backoff": 0.1}
    )
    thread.start()
    try:
        assert _wait(lambda: len(starts) == 4)
        assert health.restarts == 3
        assert health.last_error == "ConnectionError"  # the type only: /healthz is public
        assert _wait(lambda: health.state == "running")
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert gaps[1] > gaps[0] * 1.5 and gaps[2] > gaps[1] * 1.5  # exponential backoff
        assert health.failing()  # restarted a moment ago: not settled yet
        assert not health.failing(settle_seconds=0.0)
    finally:
        stop.set()
        thread.join(5)
    assert health.state == "stopped"


def test_a_loop_that_returns_on_its_own_is_restarted_too() -> None:
    runs = []
    stop = threading.Event()
    health = LoopHealth("quitter")
    loop = Loop("quitter", lambda _stop: runs.append(1))
    thread = threading.Thread(
        target=supervise, args=(loop, stop, health), kwargs={"first_backoff": 0.05}
    )
    thread.start()
    assert _wait(lambda: len(runs) >= 2)
    stop.set()
    thread.join(5)
    assert health.last_error == "returned before being stopped"


def test_a_periodic_loop_goes_on_after_a_failing_round() -> None:
    rounds: list[int] = []

    def step() -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise TimeoutError("TSA down")

    supervisor = Supervisor()
    supervisor.start([periodic("issuer", 0.02, step)])
    try:
        assert _wait(lambda: len(rounds) >= 3)
        health = supervisor.health["issuer"]
        assert health.restarts == 0  # the round failed, not the loop
        assert health.last_error == "TimeoutError" and health.failed_rounds == 0
        assert not health.failing()  # one failed round, then good ones
    finally:
        supervisor.stop()
    assert supervisor.health["issuer"].state == "stopped"


def test_a_while_due_loop_runs_rounds_back_to_back_while_work_waits() -> None:
    """The certificate issuer: no pause after a full round, the pause once it is idle."""
    backlog = [5]
    times: list[float] = []

    def step() -> bool:
        times.append(time.monotonic())
        if backlog[0] == 3:
            backlog[0] -= 1
            raise TimeoutError("TSA down")  # a failed round pauses, then goes on
        backlog[0] = max(backlog[0] - 1, 0)
        return backlog[0] > 0

    supervisor = Supervisor()
    supervisor.start([while_due("issuer", 0.3, step)])
    try:
        assert _wait(lambda: len(times) >= 7)
    finally:
        supervisor.stop()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] < 0.2 and gaps[1] < 0.2  # 5 -> 4 -> 3: more waits, no pause
    assert gaps[2] >= 0.29  # after the failed round
    assert gaps[4] >= 0.29 and gaps[5] >= 0.29  # idle: one round per interval


def test_a_loop_failing_round_after_round_is_failing_though_it_never_raises() -> None:
    def step() -> None:
        raise ConnectionRefusedError("database down")

    supervisor = Supervisor()
    supervisor.start([periodic("certificates", 0.01, step)])
    try:
        health = supervisor.health["certificates"]
        assert _wait(lambda: health.failed_rounds >= 3)
        assert health.state == "running" and health.restarts == 0
        assert health.failing()
    finally:
        supervisor.stop()


def test_a_loop_is_not_started_twice_and_a_dead_one_shows() -> None:
    started = threading.Event()
    runs: list[int] = []

    def long_running(stop: threading.Event) -> None:
        runs.append(1)
        started.set()
        stop.wait()

    supervisor = Supervisor()
    loop = Loop("delivery", long_running)
    supervisor.start([loop])
    assert started.wait(5)
    supervisor.start([loop])  # already running: not a second thread
    time.sleep(0.1)
    assert runs == [1]
    supervisor.stop()

    def killed(_stop: threading.Event) -> None:
        raise SystemExit(3)  # not an Exception: nothing restarts it

    health = LoopHealth("killed")
    with pytest.raises(SystemExit):  # not an Exception: the supervisor lets it through
        supervise(Loop("killed", killed), threading.Event(), health)
    assert health.state == "dead" and health.failing()


def test_health_is_503_while_a_loop_fails_and_names_it(sealpost: Sealpost) -> None:
    def broken(_stop: threading.Event) -> None:
        raise RuntimeError(
            "connection to postgresql://sealpost:s3cret@10.0.0.5/prod failed [SQL: SELECT 1]"
        )

    with TestClient(create_app(sealpost, start_background=False)) as client:
        assert client.get("/healthz").status_code == 200
        sealpost.supervisor.start([Loop("sequencer", broken)])
        assert _wait(lambda: sealpost.supervisor.health["sequencer"].restarts >= 1)
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy"
        assert body["loops"]["sequencer"]["state"] in ("restarting", "running")
        assert body["loops"]["sequencer"]["restarts"] >= 1
        assert "the sequencer loop is failing (RuntimeError)" in body["problems"]
        assert body["loops"]["sequencer"]["last_error"] == "RuntimeError"
        assert "s3cret" not in response.text and "10.0.0.5" not in response.text


def test_health_is_503_once_a_record_waits_too_long_for_its_seal(
    sealpost: Sealpost, tenant_id: str
) -> None:
    sealpost.settings.health_max_unsealed_seconds = 0.2
    with TestClient(create_app(sealpost, start_background=False)) as client:
        sealpost.log_storage.append([submission(tenant_id, 0)])  # no sequencer runs
        assert client.get("/healthz").status_code == 200  # it has not waited long yet
        time.sleep(0.3)
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["ledger"]["pending_records"] == 1
        assert body["ledger"]["oldest_pending_age_seconds"] >= 0.2
        assert any("sealing has stopped" in p for p in body["problems"])
        sealpost.settings.sequencer_enabled = False  # an API-only replica: it still accepts
        degraded = client.get("/healthz")
        assert degraded.status_code == 200
        assert degraded.json()["status"] == "degraded"
        assert any("sealing has stopped" in p for p in degraded.json()["problems"])
        sealpost.sequencer.seal_all()
        healthy = client.get("/healthz")
        assert healthy.status_code == 200, healthy.json()
        assert healthy.json()["status"] == "ok"
        assert healthy.json()["ledger"]["oldest_pending_age_seconds"] is None
