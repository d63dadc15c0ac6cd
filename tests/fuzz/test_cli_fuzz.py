"""Fuzzing ``sealpost verify``: whatever file it is given, it exits 0 (valid), 1 (not valid) or
2 (unreadable) with words, never with a traceback, and prints nothing a terminal would obey.

The property drives the command in-process (typer's runner, hundreds of files); the
regressions below run the real ``sealpost`` executable, as a user does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from sealpost.cli import app
from tests.fuzz.bundles import HOSTILE_TEXT, Bundle, claims
from tests.fuzz.mutations import Edit, apply_edits, edits, fuzz_settings, time_bound

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

SEALPOST = str(Path(sys.executable).parent / "sealpost")
HOSTILE = 5  # the genuine bundle whose record holds HOSTILE_TEXT (tests/fuzz/bundles.py)
TERMINAL_CONTROLS = ("\x1b", "\x07", "\x9b", "\x9d")


def _run_cli(path: Path, root_pem: Path, as_json: bool) -> tuple[int, str]:
    args = ["verify", str(path), "--trust", str(root_pem), *(["--json"] if as_json else [])]
    with time_bound(60):
        result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("sealpost verify crashed") from result.exception
    return result.exit_code, result.stdout + result.stderr


FILES = st.one_of(
    st.tuples(st.integers(0, 5), edits(), st.just(b"")),
    st.tuples(st.just(-1), st.just([]), st.binary(max_size=256).map(lambda b: b"%PDF-" + b)),
    st.tuples(st.just(-1), st.just([]), st.binary(max_size=256)),
)


def _file_bytes(bundles: list[Bundle], which: int, program: list[Edit], raw: bytes) -> bytes:
    if which < 0:
        return raw
    doc = apply_edits(bundles[which], program, bundles)
    try:
        return json.dumps(doc).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        return b"[" * 100_000


@fuzz_settings(60, deadline_ms=10_000)
@given(FILES, st.booleans())
@example((0, [Edit(("format",), "replace", "[/x]")], b""), False)
@example((0, [Edit(("format",), "replace", "\x1b]0;owned\x07")], b""), False)
@example((HOSTILE, [], b""), False)
@example((HOSTILE, [], b""), True)
def test_verify_answers_every_file_with_an_exit_code_and_words(
    bundles: list[Bundle],
    keys_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    file: tuple[int, list[Edit], bytes],
    as_json: bool,
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz-cli-input.json"
    data = _file_bytes(bundles, *file)
    path.write_bytes(data)
    code, output = _run_cli(path, keys_dir / "root-ca.pem", as_json)
    assert code in (0, 1, 2), output
    if as_json:
        answer: dict[str, Any] = json.loads(output.splitlines()[0] if code == 2 else output)
        assert answer["valid"] is (code == 0)
    else:
        assert not any(c in output for c in TERMINAL_CONTROLS), output
        assert ("VALID" in output) if code < 2 else ("error: cannot read" in output)
    if code == 0:  # valid: what one genuine bundle claims, nothing else
        assert claims(json.loads(data)) in [claims(b) for b in bundles]


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
    env["SEALPOST_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run(
        [SEALPOST, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )


def test_markup_in_a_bundle_is_printed_not_obeyed(keys_dir: Path, tmp_path: Path) -> None:
    """Regression: ``"format": "[/x]"`` made `sealpost verify` die with rich's MarkupError."""
    path = tmp_path / "markup.json"
    path.write_text(json.dumps({"format": "[/x] [link=https://evil.example]click[/link]"}))
    done = _cli(["verify", str(path), "--trust", str(keys_dir / "root-ca.pem")], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    assert "[/x] [link=https://evil.example]click[/link]" in " ".join(done.stderr.split())


def test_a_valid_bundle_with_hostile_text_verifies_and_prints_it_harmlessly(
    bundles: list[Bundle], keys_dir: Path, tmp_path: Path
) -> None:
    """Regression: a sender address with markup crashed the verifier on a *valid* bundle, and
    ESC sequences from the record reached the terminal."""
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(bundles[HOSTILE]))
    done = _cli(["verify", str(path), "--trust", str(keys_dir / "root-ca.pem")], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VALID" in done.stdout and "Traceback" not in done.stderr
    assert not any(c in done.stdout for c in TERMINAL_CONTROLS)
    shown = HOSTILE_TEXT.replace("\x1b", "\\x1b").replace("\x07", "\\x07").replace("\x9b", "\\x9b")
    assert shown in done.stdout.replace("\n", "")
