"""Run the benchmarks one after another and print every measured figure beside its target.

`make bench` calls this.  Each benchmark prints its own readable output (kept, in full, in
``bench/results/<date>-bench.log``) and one ``FIGURE {json}`` line per figure the issues set a
target for (see ``bench/_report.py``); this script gathers those lines into one table, so a
reader compares figures without reading each script's prose.  The benchmarks run one at a time:
on a small machine two of them at once would measure each other.

    python bench/table.py                 # every benchmark, default sizes
    python bench/table.py --quick         # every benchmark at smoke-test sizes (minutes)
    python bench/table.py --only ledger,api
    python bench/table.py --from bench/results/2026-12-07-bench.log   # table of an earlier run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


@dataclass(frozen=True)
class Bench:
    """One benchmark: its name, its command at default sizes and at smoke-test sizes."""

    name: str
    full: list[str]
    quick: list[str]


BENCHES = [
    Bench(
        "smtp_accept",
        ["bash", str(HERE / "smtp_accept.sh")],
        ["env", "N=1000", "R=1", "LAT_N=300", "BIG=0", "bash", str(HERE / "smtp_accept.sh")],
    ),
    Bench(
        "ledger",
        [PY, str(HERE / "ledger.py"), "--records", "50000"],
        [PY, str(HERE / "ledger.py"), "--records", "5000"],
    ),
    Bench(
        "certificates",
        [PY, str(HERE / "certificates.py")],
        [PY, str(HERE / "certificates.py"), "--quick"],
    ),
    Bench(
        "large_messages",
        [PY, str(HERE / "large_messages.py")],
        [PY, str(HERE / "large_messages.py"), "--quick"],
    ),
    Bench(
        "events",
        [PY, str(HERE / "events.py"), "--backend", "postgresql", "--worker-process"],
        [PY, str(HERE / "events.py"), "--backend", "postgresql", "--rate", "200", "--seconds", "3"],
    ),
    Bench("api", [PY, str(HERE / "api.py")], [PY, str(HERE / "api.py"), "--quick"]),
    Bench(
        "sequences",
        [
            PY,
            str(HERE / "sequences.py"),
            *("--enrolments", "20000", "--single", "500", "--dispatch", "2000"),
            *("--database", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        ],
        [
            PY,
            str(HERE / "sequences.py"),
            *("--enrolments", "500", "--single", "50", "--dispatch", "200"),
        ],
    ),
    Bench(
        "archive",
        [PY, str(HERE / "archive.py"), "--messages", "1000", "--clients", "8"],
        [PY, str(HERE / "archive.py"), "--messages", "100", "--clients", "4"],
    ),
    Bench(
        "archive_search",
        [PY, str(HERE / "archive_search.py"), "--messages", "100000"],
        [PY, str(HERE / "archive_search.py"), "--messages", "5000"],
    ),
]


def figures(lines: list[str], bench: str) -> list[dict[str, object]]:
    """The FIGURE records among a benchmark's output lines, tagged with the benchmark's name."""
    found = []
    for line in lines:
        if line.startswith("FIGURE "):
            try:
                record = json.loads(line[len("FIGURE ") :])
            except json.JSONDecodeError:
                continue
            record.setdefault("bench", bench)
            found.append(record)
    return found


def run(bench: Bench, quick: bool, log: Path) -> tuple[list[dict[str, object]], int, float]:
    """Run one benchmark, echo and log its output; return its figures, exit code and seconds."""
    command = bench.quick if quick else bench.full
    started = time.monotonic()
    lines: list[str] = []
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n===== {bench.name}: {' '.join(command)}\n")
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            out.write(line)
            lines.append(line.rstrip("\n"))
        code = proc.wait()
        out.write(f"===== {bench.name}: exit {code}\n")
    found = [{**f, "bench": bench.name} for f in figures(lines, bench.name)]
    return found, code, time.monotonic() - started


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def table(records: list[dict[str, object]]) -> str:
    """A Markdown table: one row per figure, its target and whether it is met."""
    rows = [
        "| bench | figure | value | target | met | anchor |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in records:
        better = r.get("better")
        target = r.get("target")
        sign = {"min": ">= ", "max": "<= "}.get(str(better), "")
        target_text = f"{sign}{_fmt(target)} {r.get('unit', '')}" if target is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]  # type: ignore[index]
        rows.append(
            f"| {r.get('bench', '')} | {r['name']} | {_fmt(r['value'])} {r.get('unit', '')} "
            f"| {target_text} | {met} | {r.get('anchor') or ''} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--from", dest="source", type=Path, help="tabulate an earlier log")
    args = parser.parse_args()

    if args.source is not None:
        records: list[dict[str, object]] = []
        bench = ""
        for line in args.source.read_text(encoding="utf-8").splitlines():
            if line.startswith("===== "):
                bench = line[6:].split(":", 1)[0]
            records.extend(figures([line], bench))
        print(table(records))
        return

    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    log = results / f"{dt.date.today().isoformat()}-bench{'-quick' if args.quick else ''}.log"
    records = []
    failures: list[str] = []
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        found, code, seconds = run(bench, args.quick, log)
        records.extend(found)
        if code != 0:
            failures.append(f"{bench.name} (exit {code})")
        print(f"----- {bench.name}: {len(found)} figure(s), {seconds:.0f} s, exit {code}")
    print()
    print(table(records))
    print(f"\nfull output: {log}")
    if failures:
        print("benchmarks that failed: " + ", ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
