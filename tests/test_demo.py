"""``sealpost demo`` as a newcomer runs it: its output is the story of one certified email,
with no warning they cannot act on (aiosmtpd's ``login_data`` deprecation, pyHanko's
"fetching is not allowed")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SEALPOST = str(Path(sys.executable).parent / "sealpost")


@pytest.mark.slow
def test_demo_verifies_its_certificate_and_warns_about_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALPOST_")}
    env["SEALPOST_LOG_LEVEL"] = "WARNING"  # Sealpost's own info lines off; warnings still show
    result = subprocess.run(
        [SEALPOST, "demo", "--data-dir", str(tmp_path / "demo")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VALID" in result.stdout
    assert result.stderr == ""
    for noise in ("deprecated", "fetching is not allowed", "Warning", "WARNING"):
        assert noise not in result.stdout
