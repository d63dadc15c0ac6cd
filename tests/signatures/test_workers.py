"""The worker processes that read uploaded PDFs (``sealpost.signatures.workers``): each task
under a wall-clock, a CPU-time and a memory limit, enforced by the kernel and by killing the
worker; a task stopped by a limit costs its own worker only, and the next task is served.

The tasks are this module's functions: a worker imports this module to run them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealpost.errors import InvalidInput
from sealpost.signatures.documents import inspect_pdf
from sealpost.signatures.workers import (
    QUEUE_PER_WORKER,
    Busy,
    Fault,
    LimitedWorkers,
    LimitExceeded,
    Limits,
    Refused,
)
from tests.signatures.pdf_samples import many_annotations

# --- tasks (run in a worker) -----------------------------------------------------------------


def echo(value: Any) -> tuple[Any, bytes]:
    return value, b"payload"


def pid() -> tuple[Any, bytes]:
    return os.getpid(), b""


def sleep(seconds: float) -> tuple[Any, bytes]:
    time.sleep(seconds)
    return seconds, b""


def mark_and_sleep(path: str) -> tuple[Any, bytes]:
    Path(path).touch()
    time.sleep(600)
    return None, b""


def spin() -> tuple[Any, bytes]:
    """Burn CPU until something stops the process."""
    count = 0
    while True:
        count += 1


def allocate(size: int) -> tuple[Any, bytes]:
    return len(bytearray(size)), b""


def limits() -> tuple[Any, bytes]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/statm", encoding="ascii") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    return {
        "as": resource.getrlimit(resource.RLIMIT_AS)[0],
        "mapped": mapped,
        "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
        "used_cpu": usage.ru_utime + usage.ru_stime,
        "core": resource.getrlimit(resource.RLIMIT_CORE)[0],
    }, b""


def inspect_with_little_memory(data: bytes, headroom_mb: int) -> tuple[Any, bytes]:
    """PDF intake in a worker left with ``headroom_mb`` of its address space."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    with open("/proc/self/status") as status:
        used = int(status.read().split("VmSize:")[1].split()[0]) * 1024
    ballast = bytearray(limit - used - headroom_mb * 1024 * 1024)
    inspect_pdf(data, name="annotations.pdf")
    return len(ballast), b""


def refuse(message: str) -> tuple[Any, bytes]:
    raise InvalidInput(message)


def crash() -> tuple[Any, bytes]:
    raise ZeroDivisionError("a bug")


# --- tests -----------------------------------------------------------------------------------


def _workers(**limits: Any) -> LimitedWorkers:
    values: dict[str, Any] = {"timeout_seconds": 20.0, "memory_mb": 512, "workers": 2}
    values.update(limits)
    return LimitedWorkers(Limits(**values), preload=__name__, name="test-worker")


@pytest.fixture
def workers(request: pytest.FixtureRequest) -> Iterator[LimitedWorkers]:
    """The pool, with the limits a test gives (``parametrize("workers", [{...}])``)."""
    pool = _workers(**getattr(request, "param", {}))
    try:
        yield pool
    finally:
        pool.close()


@pytest.mark.parametrize("workers", [{"timeout_seconds": 6.0}], indirect=True)
def test_a_task_over_the_time_limit_is_killed_and_the_other_workers_task_is_not_touched(
    workers: LimitedWorkers,
) -> None:
    """The flaw of ProcessPoolExecutor avoided: killing one task's worker fails no other
    caller's task in flight."""
    workers.start()
    outcome: dict[str, Any] = {}

    def slow() -> None:
        started = time.monotonic()
        try:
            workers.run(sleep, 600.0)
        except LimitExceeded as exc:
            outcome["slow"] = (exc.limit, time.monotonic() - started)

    thread = threading.Thread(target=slow)
    thread.start()
    assert workers.run(sleep, 0.5) == (0.5, b"")  # in the other worker, meanwhile
    assert thread.is_alive()
    thread.join(60)
    limit, elapsed = outcome["slow"]
    assert limit == "time"
    assert 6.0 <= elapsed < 20.0, elapsed
    assert workers.run(echo, "next") == ("next", b"payload")


@pytest.mark.parametrize("workers", [{"timeout_seconds": 60.0, "cpu_seconds": 1}], indirect=True)
def test_the_cpu_time_limit_ends_a_task_even_when_the_wall_clock_would_not(
    workers: LimitedWorkers,
) -> None:
    started = time.monotonic()
    with pytest.raises(LimitExceeded) as raised:
        workers.run(spin)
    assert raised.value.limit == "time" and "SIGXCPU" in raised.value.detail
    assert time.monotonic() - started < 50.0
    assert workers.run(echo, 1) == (1, b"payload")


@pytest.mark.parametrize("workers", [{"memory_mb": 256}], indirect=True)
def test_a_task_over_the_memory_limit_is_stopped_and_the_next_is_served(
    workers: LimitedWorkers,
) -> None:
    with pytest.raises(LimitExceeded) as raised:
        workers.run(allocate, 1 << 30)
    assert raised.value.limit == "memory"
    assert workers.run(allocate, 16 << 20) == (16 << 20, b"")


@pytest.mark.parametrize("workers", [{"memory_mb": 256, "workers": 1}], indirect=True)
def test_a_reader_short_of_memory_is_over_the_memory_limit_not_a_damaged_document(
    workers: LimitedWorkers,
) -> None:
    """Short of memory, pyHanko and CPython fail in many ways, depending on where the last
    allocation fails (MemoryError; a SystemError that intake would call a damaged PDF; a
    crash): each is the memory limit, and the next task runs in a fresh worker."""
    document = many_annotations(300_000)
    for headroom_mb in range(2, 18, 2):
        with pytest.raises(LimitExceeded) as raised:
            workers.run(inspect_with_little_memory, document, headroom_mb)
        assert raised.value.limit == "memory", (headroom_mb, raised.value.detail)
    assert workers.run(echo, "fresh") == ("fresh", b"payload")


@pytest.mark.parametrize(
    "workers", [{"timeout_seconds": 7.0, "memory_mb": 300, "workers": 1}], indirect=True
)
def test_each_task_runs_under_the_limits_without_core_dumps(workers: LimitedWorkers) -> None:
    for _ in range(3):  # the CPU limit is the time spent so far plus the task's share
        value, _ = workers.run(limits)
        # the room is 300 MiB beyond what the worker mapped when it started (its preloaded
        # modules), whatever that is: never less, and it is all still there
        room = value["as"] - 300 * 1024 * 1024
        assert room > 0
        assert value["mapped"] - 64 * 2**20 <= room <= value["mapped"] + 16 * 2**20
        assert value["core"] == 0
        assert value["used_cpu"] < value["cpu"] <= value["used_cpu"] + 8 + 1


@pytest.mark.parametrize("workers", [{"timeout_seconds": 5.0, "workers": 1}], indirect=True)
def test_past_the_queue_a_caller_is_told_at_once_that_every_worker_is_busy(
    workers: LimitedWorkers, tmp_path: Path
) -> None:
    """Each caller waiting for a worker holds a server thread: beyond a short queue the answer
    is "busy, retry" at once, not after the timeout."""
    started_file = tmp_path / "started"
    threads = [threading.Thread(target=_ignore, args=(workers, mark_and_sleep, str(started_file)))]
    threads[0].start()
    deadline = time.monotonic() + 30
    while not started_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the slow task holds the only worker
    for _ in range(QUEUE_PER_WORKER):
        threads.append(threading.Thread(target=_ignore, args=(workers, echo, 1)))
        threads[-1].start()
    while workers.waiting < QUEUE_PER_WORKER and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers.waiting == QUEUE_PER_WORKER
    started = time.monotonic()
    with pytest.raises(Busy, match="wait for a worker already"):
        workers.run(echo, "one too many")
    assert time.monotonic() - started < 1.0
    for thread in threads:
        thread.join(60)
    assert workers.run(echo, "later") == ("later", b"payload")


def _ignore(workers: LimitedWorkers, task: Any, *args: Any) -> None:
    with contextlib.suppress(LimitExceeded, Busy):
        workers.run(task, *args)


@pytest.mark.parametrize("workers", [{"workers": 1}], indirect=True)
def test_a_worker_killed_from_outside_while_idle_is_replaced(workers: LimitedWorkers) -> None:
    first, _ = workers.run(pid)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(first, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)  # a zombie until reaped: kill(0) still succeeds, the send fails
    second, _ = workers.run(pid)
    assert second != first
    assert workers.run(echo, [1, "two"]) == ([1, "two"], b"payload")


def test_a_refusal_and_a_bug_travel_back_as_data(workers: LimitedWorkers) -> None:
    with pytest.raises(Refused) as refused:
        workers.run(refuse, "not a PDF")
    assert (refused.value.code, refused.value.message) == ("invalid_input", "not a PDF")
    with pytest.raises(Fault, match="ZeroDivisionError: a bug"):
        workers.run(crash)
    assert workers.run(echo, "still") == ("still", b"payload")
