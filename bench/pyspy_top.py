"""Top functions of a py-spy profile recorded with ``--threads --format raw`` (collapsed stacks).

    python3 bench/pyspy_top.py /tmp/sealpost-sqlite-HHMMSS.txt [--top 25] [--rate 100]

Prints, from the samples of non-idle threads (py-spy's default; with ``--gil``, of the thread
holding the GIL):

- samples per thread (at --rate Hz, samples / rate = seconds busy);
- self time: the innermost frame of each sample (where the CPU or the blocking call is);
- inclusive time of the project's own functions (``sealpost/`` frames), each counted once
  per sample;
- inclusive time of every function, per thread, the frames of the thread start-up excluded.

Standard library only.
"""

from __future__ import annotations

import argparse
import re
import signal
from collections import Counter, defaultdict

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
BOOT = ("Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "_worker ")


def parse(path: str) -> list[tuple[str, list[str], int]]:
    samples = []
    with open(path) as handle:
        for raw in handle:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            stack, _, count = raw.rpartition(" ")
            frames = stack.split(";")
            thread = frames[0]
            if thread.startswith("thread ("):
                name = thread.split(": ", 1)[1] if ": " in thread else thread
                frames = frames[1:]
            else:
                name = "all"
            samples.append((name, frames, int(count)))
    return samples


def short(frame: str) -> str:
    """'func (pkg/file.py:123)' -> 'func (pkg/file.py)': aggregate over lines."""
    match = FRAME.match(frame)
    return f"{match['func']} ({match['file']})" if match else frame


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=float, default=100.0)
    args = parser.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # | head
    samples = [s for s in parse(args.profile) if s[1]]  # a sample may have no frames
    total = sum(c for _, _, c in samples)

    per_thread: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    for thread, frames, count in samples:
        thread_kind = re.sub(r"_\d+$", "_N", thread)  # asyncio_0..5 -> asyncio_N
        per_thread[thread_kind] += count
        self_time[short(frames[-1])] += count
        self_line[frames[-1]] += count
        for frame in {short(f) for f in frames}:
            if "sealpost/" in frame:
                ours[frame] += count
            if not frame.startswith(BOOT):
                inclusive[thread_kind][frame] += count

    def show(title: str, counter: Counter[str], n: int, base: int) -> None:
        print(f"\n== {title}")
        for name, count in counter.most_common(n):
            print(f"{count:7d} {100 * count / base:5.1f}%  {name}")

    print(f"{total} samples ({total / args.rate:.1f} thread-seconds at {args.rate:g} Hz)")
    show("samples per thread", per_thread, 50, total)
    show("self (innermost frame)", self_time, args.top, total)
    show("self, by line", self_line, args.top, total)
    show("inclusive, sealpost/ frames", ours, args.top, total)
    for thread, counter in sorted(inclusive.items(), key=lambda kv: -per_thread[kv[0]]):
        show(f"inclusive, thread {thread}", counter, args.top, per_thread[thread])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
