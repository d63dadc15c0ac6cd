"""scripts/system-deps, which `make run`, `make test` and .ci/run call first: with a program
missing it names the one command that installs it (one line, exit 1) rather than letting tests
fail.  The programs are hidden with a PATH holding only bash; as root the script runs as
``nobody`` (no sudo either), so nothing is ever installed here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "system-deps"
KNOWN = {"python3-venv", "fonts-dejavu-core", "openssl", "poppler-utils", "chromium"}
KNOWN |= {"rabbitmq-server", "postgresql"}


@pytest.fixture
def bare_path() -> Iterator[Path]:
    """A directory with bash and a copy of the script, readable by ``nobody``."""
    directory = Path(tempfile.mkdtemp(prefix="system-deps-"))
    try:
        directory.chmod(0o755)
        bash = shutil.which("bash")
        assert bash is not None
        (directory / "bash").symlink_to(bash)
        shutil.copy(SCRIPT, directory / "system-deps")
        (directory / "system-deps").chmod(0o755)
        yield directory
    finally:
        shutil.rmtree(directory)


def run(
    directory: Path, purpose: str, *, as_root: bool = False, python: str = "python3"
) -> subprocess.CompletedProcess[str]:
    command = ["/usr/bin/env", f"PATH={directory}", f"PYTHON={python}"]
    command += [str(directory / "system-deps"), purpose]
    if os.geteuid() == 0 and not as_root:
        command = ["runuser", "-u", "nobody", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_user_is_told_the_one_command_and_nothing_runs(bare_path: Path) -> None:
    result = run(bare_path, "test")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    missing, _, command = line.partition("; install them with: ")
    assert missing.startswith("system-deps: missing ")
    assert "openssl, pdfsig, pdftotext, chromium" in missing
    assert command.startswith("sudo apt-get install -y ")
    packages = command.removeprefix("sudo apt-get install -y ").split()
    assert {"openssl", "poppler-utils", "chromium"} <= set(packages) <= KNOWN
    assert len(packages) == len(set(packages))


def test_run_needs_fewer_packages_than_test(bare_path: Path) -> None:
    result = run(bare_path, "run")
    if result.returncode == 0:  # this Python has ensurepip and the fonts are there
        assert result.stderr == ""
        return
    [line] = result.stderr.splitlines()
    packages = line.partition("sudo apt-get install -y ")[2].split()
    assert set(packages) <= {"python3-venv", "fonts-dejavu-core"}


def test_with_everything_there_it_is_silent(bare_path: Path) -> None:
    """As the caller (root or not): this interpreter may be out of ``nobody``'s reach."""
    base = getattr(sys, "_base_executable", sys.executable)
    for program in ("openssl", "pdfsig", "pdftotext", "chromium", "rabbitmqctl"):
        found = shutil.which(program, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
        if found is None:
            pytest.skip(f"{program} is not installed here")
        (bare_path / program).symlink_to(found)
    (bare_path / "rabbitmq-server").symlink_to("/usr/sbin/rabbitmq-server")
    result = run(bare_path, "test", python=base, as_root=True)  # no apt-get on this PATH
    if "ensurepip" in result.stderr or "DejaVuSans" in result.stderr:
        pytest.skip("this machine has no python3-venv or DejaVu fonts")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(os.geteuid() != 0, reason="the root branch")
def test_root_without_apt_get_names_the_command_too(bare_path: Path) -> None:
    result = run(bare_path, "test", as_root=True)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert ", and no apt-get here; on Debian: sudo apt-get install -y " in line


def test_an_unknown_purpose_is_refused(bare_path: Path) -> None:
    result = run(bare_path, "deploy")
    assert result.returncode == 2
    assert "usage: scripts/system-deps run|test|ci" in result.stderr
