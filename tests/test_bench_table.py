"""`make bench` gathers each benchmark's FIGURE lines into one table beside their targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench import table
from bench._report import figure

ROOT = Path(__file__).resolve().parents[1]


def test_a_figure_line_says_whether_its_target_is_met(capsys: pytest.CaptureFixture[str]) -> None:
    figure("proofs served", 5200.0, "proofs/s", target=5000, better="min", command="x")
    figure("p99", 250.0, "ms", target=100, better="max", command="y")
    out = capsys.readouterr().out.splitlines()
    records = table.figures(out, "ledger")
    assert [r["met"] for r in records] == [True, False]
    rendered = table.table([{**r, "bench": "ledger"} for r in records])
    assert "| ledger | proofs served | 5,200.0 proofs/s | >= 5,000 proofs/s | yes |" in rendered
    assert "| ledger | p99 | 250.0 ms | <= 100 ms | **no** |" in rendered


def test_an_earlier_log_is_tabulated_by_benchmark(tmp_path: Path) -> None:
    record = {"name": "certificates/s", "value": 31.0, "unit": "/s", "target": 25}
    record |= {"better": "min", "met": True, "anchor": "", "command": "c"}
    log = tmp_path / "bench.log"
    log.write_text(
        "===== certificates: python bench/certificates.py --records 100\n"
        "some prose\nFIGURE not json\n"
        f"FIGURE {json.dumps(record)}\n"
        "===== certificates: exit 0\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "table.py"), "--from", str(log)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| certificates | certificates/s | 31.0 /s | >= 25 /s | yes |" in out


def test_an_unknown_benchmark_name_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "table.py"), "--only", "nonesuch"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown benchmark(s): nonesuch" in proc.stderr
