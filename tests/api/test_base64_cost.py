"""Checking a document's base64 costs no more memory than the document (docs/security.md,
resource exhaustion): a regular expression with a repeated group cost Python's ``re`` about 30
bytes per byte checked (a 32 MiB document, 960 MiB) with the GIL held, in the process that also
runs SMTP and sealing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import TypeAdapter, ValidationError

from sealpost.api.text import Base64

CHECK_32_MIB = """
import resource
from pydantic import TypeAdapter
from sealpost.api.text import Base64
document = "QUJD" * (8 * 1024 * 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
TypeAdapter(Base64).validate_python(document)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_checking_32_mib_of_base64_costs_no_extra_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK_32_MIB], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 32, f"checking grew the process by {done.stdout.strip()} MiB"


@pytest.mark.parametrize("text", ["", "AAAA", "AA==", "AAA=", "QUJDRA=="])
def test_valid_base64_passes(text: str) -> None:
    assert TypeAdapter(Base64).validate_python(text) == text


@pytest.mark.parametrize("text", ["A", "AAA", "A===", "AA=A", "AAAA====", "AA AA", "AAAé"])
def test_invalid_base64_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="not valid base64"):
        TypeAdapter(Base64).validate_python(text)
