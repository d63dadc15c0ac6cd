"""Summarise the RESULT lines of bench/smtp_accept.sh: one table row per target.

    python3 bench/smtp_accept_table.py /tmp/smtp-accept-results.txt [--markdown]

Accept msgs/s: median/min/max over the runs and the ratio of the medians to Postfix's; for the
Sealpost targets also the medians of the latency client's figures and of the peak RSS; then the
attachment runs.  Standard library only (runs with the system python3).
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _report import figure

TARGET_RATIO = {"sealpost-sqlite": 1.0, "sealpost-postgres": 0.8}
"""Issue 16 §3: accept rate against Postfix's in the same run."""
TARGET_DATA_P99_MS = 100.0
COMMAND = "bash bench/smtp_accept.sh"


def load(path: str) -> list[dict[str, str]]:
    rows = []
    with open(path) as handle:
        for line in handle:
            if line.startswith("RESULT "):
                rows.append(dict(re.findall(r"(\w+)=(\S+)", line)))
    return rows


def med(rows: list[dict[str, str]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if key in r and r[key] not in ("", "?", "nan")]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> int:
    path = sys.argv[1]
    markdown = "--markdown" in sys.argv
    rows = load(path)
    by_target: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_target.setdefault(row["target"], []).append(row)

    postfix = med(by_target.get("postfix", []), "accept_mps")
    header = [
        "target",
        "runs",
        "accept msg/s median",
        "min",
        "max",
        "vs postfix",
        "DATA->250 p50 ms",
        "p99 ms",
        "session p50 ms",
        "p99 ms",
        "client msg/s",
        "server CPU ms/msg",
        "peak RSS MiB",
    ]
    table = []
    for target, runs in by_target.items():
        if "accept_mps" not in runs[0]:
            continue
        values = [float(r["accept_mps"]) for r in runs]
        median = statistics.median(values)
        hwm = med(runs, "peak_rss_kb")
        table.append(
            [
                target,
                str(len(values)),
                f"{median:.1f}",
                f"{min(values):.1f}",
                f"{max(values):.1f}",
                f"{median / postfix:.2f}x" if postfix else "-",
                fmt(med(runs, "data_p50_ms")),
                fmt(med(runs, "data_p99_ms")),
                fmt(med(runs, "session_p50_ms")),
                fmt(med(runs, "session_p99_ms")),
                fmt(med(runs, "lat_mps")),
                fmt(med(runs, "server_cpu_ms_per_msg"), 2),
                fmt(hwm / 1024 if hwm else None, 0),
            ]
        )
    big_header = [
        "target",
        "message bytes",
        "DATA->250 ms",
        "VmHWM before MiB",
        "after MiB",
        "growth MiB",
    ]
    big = [
        [
            r["target"],
            r.get("message_bytes", "?"),
            r.get("data_ms", "-"),
            f"{int(r['hwm_before_kb']) / 1024:.0f}",
            f"{int(r['hwm_after_kb']) / 1024:.0f}",
            f"{int(r['growth_kb']) / 1024:.0f}",
        ]
        for r in rows
        if "growth_kb" in r
    ]
    figures(by_target, postfix)
    for head, body in ((header, table), (big_header, big)):
        if not body:
            continue
        if markdown:
            print("| " + " | ".join(head) + " |")
            print("|" + "|".join(" --- " for _ in head) + "|")
            for line in body:
                print("| " + " | ".join(line) + " |")
        else:
            widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(head)]
            for line in (head, *body):
                print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))
        print()
    return 0


def figures(by_target: dict[str, list[dict[str, str]]], postfix: float | None) -> None:
    """The figures issue 16 sets targets for: the accept rate as a ratio of Postfix's (medians
    of the same interleaved runs) and the DATA->250 p99 of the latency client."""
    for target, goal in TARGET_RATIO.items():
        runs = by_target.get(target, [])
        rate = med(runs, "accept_mps")
        if rate is not None and postfix:
            figure(
                f"smtp accept {target} / postfix",
                rate / postfix,
                "x",
                target=goal,
                better="min",
                anchor=f"postfix {postfix:.1f} msg/s, {target} {rate:.1f} msg/s "
                f"(medians of {len(runs)} runs)",
                command=COMMAND,
            )
        p99 = med(runs, "data_p99_ms")
        if p99 is not None:
            figure(
                f"smtp DATA->250 p99 {target}",
                p99,
                "ms",
                target=TARGET_DATA_P99_MS,
                better="max",
                command=COMMAND,
            )


if __name__ == "__main__":
    sys.exit(main())
