"""The layers contract (``[tool.importlinter]`` in pyproject.toml, run by ``make lint``) holds,
and it fails on a new layer violation or import cycle: proven on a copy of the package with a
deliberate violation added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        env={"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layers_contract_is_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "says"),
    [
        # a lower layer reaching up: events must never import a domain
        (
            "events/outbox.py",
            "import sealpost.communications.repository",
            "sealpost.events is not allowed to import sealpost.communications",
        ),
        # two domains importing each other instead of going through a port
        (
            "communications/repository.py",
            "import sealpost.signatures.repository",
            "sealpost.communications is not allowed to import sealpost.signatures",
        ),
        # a domain reaching for the composition root (the old service locator)
        (
            "signatures/repository.py",
            "import sealpost.app",
            "sealpost.signatures is not allowed to import sealpost.app",
        ),
        # a cycle between two layers: the ledger importing events, which imports the ledger
        (
            "ledger/merkle.py",
            "import sealpost.events.registry",
            "sealpost.ledger is not allowed to import sealpost.events",
        ),
    ],
)
def test_a_violation_breaks_the_contract(
    project_copy: Path, module: str, line: str, says: str
) -> None:
    target = project_copy / "src" / "sealpost" / module
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")
    result = _lint(project_copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert says in result.stdout
