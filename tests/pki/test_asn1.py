"""The asn1crypto definite-length workaround: same bytes, no forced re-encoding; what breaks
without it; and that every entry point installs it at start-up (never an import)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from asn1crypto import core

from sealpost.pki import asn1
from tests.support.serve import serve_env
from tests.support.smtp_peer import free_port

#: A SEQUENCE of length 3968 (``30 82 0f 80``: the last header byte is 0x80, yet definite).
DER = b"\x30\x82\x0f\x80" + b"\x04\x82\x0f\x7c" + b"x" * 0x0F7C


@pytest.mark.parametrize(
    ("header", "definite"),
    [
        (b"\x30\x82\x0f\x80", True),  # length 3968: ends in 0x80, definite
        (b"\x04\x82\x01\x80", True),  # an RSA-3072 signature's OCTET STRING
        (b"\x30\x81\x80", True),  # length 128
        (b"\x30\x80", False),  # BER indefinite
        (b"\xa0\x82\x0f\x84\x30\x82\x0f\x80", True),  # explicit tag around a definite value
        (b"\xa0\x80\x30\x80", False),  # indefinite inside indefinite
        (b"\x1f\x81\x00\x80", False),  # high tag number, then indefinite
        (b"\x1f\x81\x00\x81\x80", True),  # high tag number, then length 128
    ],
)
def test_the_innermost_length_is_read_correctly(header: bytes, definite: bool) -> None:
    assert asn1.last_length_is_definite(header) is definite


class _Holder(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, Any]]] = [("value", core.OctetString)]


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The ``force`` argument of every ``Sequence._set_contents`` call: True is a re-encoding
    of the value's whole subtree."""
    calls: list[bool] = []
    original = core.Sequence._set_contents

    def spy(self: core.Sequence, force: bool = False) -> None:
        calls.append(force)
        original(self, force)

    monkeypatch.setattr(core.Sequence, "_set_contents", spy)
    return calls


def test_a_value_whose_length_ends_in_0x80_dumps_unchanged_without_re_encoding(
    forced: list[bool],
) -> None:
    asn1.install()
    asn1.install()  # idempotent
    assert asn1.installed()
    value = _Holder.load(DER)
    assert value.dump() == DER and value.dump() == DER
    assert True not in forced
    assert value.dump(force=True) == DER  # an explicit force still re-encodes, to DER
    assert core.Sequence.load(b"\x30\x80\x04\x01x\x00\x00").dump(force=True) == b"\x30\x03\x04\x01x"


class _Outer(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[tuple[str, Any]]] = [("inner", _Holder)]


@pytest.mark.parametrize("fixed", [False, True], ids=["unpatched", "patched"])
def test_without_the_fix_every_dump_re_encodes_the_whole_subtree(
    fixed: bool, monkeypatch: pytest.MonkeyPatch, forced: list[bool]
) -> None:
    """The bug (wbond/asn1crypto#249): asn1crypto 1.5.1 unpatched takes ``30 82 0f 80`` for
    an indefinite length, so each ``dump()`` re-encodes the value and its children, and the
    rebuilt header ends in 0x80 again: it never settles.  pyHanko builds CMS structures around
    parsed ones (a SignedData around its SignerInfo) and dumps them many times while signing:
    re-encodings nested that way are how one seal took 5-40 s."""
    if not fixed:  # back to asn1crypto's own methods, for this test only
        for cls in asn1._CLASSES:
            monkeypatch.setattr(cls, "dump", cls.__dict__["dump"].__wrapped__)
    assert asn1.installed() is fixed
    value = _Holder.load(DER)
    assert value.dump() == DER and value.dump() == DER  # the same bytes either way
    outer = _Outer({"inner": value})  # built around the parsed value, as pyHanko does
    for _ in range(3):
        assert outer.dump()[4:] == DER
    if fixed:
        assert True not in forced
    else:  # at least one re-encoding of the subtree per dump, of the value or around it
        assert forced.count(True) >= 2 + 3


# --- installed at start-up, by every entry point -----------------------------------------

#: Runs ``sealpost.cli.main`` as the ``sealpost`` script does, with the role's serving call
#: (``uvicorn.run`` for the API, ``Sealpost.start_background`` for the loops of the worker
#: and SMTP roles) replaced by a probe reporting whether the fix is installed there.  Before
#: ``main``, every module of the signing and sealing path is imported: none may install it.
_PROBE = """
import os, sys
import uvicorn
import sealpost.app, sealpost.cli, sealpost.api.app, sealpost.certificates.seal
import sealpost.certificates.verify, sealpost.certificates.pades.signing, sealpost.pki.tsa
from sealpost.pki import asn1

print("imported", asn1.installed(), flush=True)

def probe(*args, **kwargs):
    print("serving", asn1.installed(), flush=True)
    os._exit(0)

uvicorn.run = probe
sealpost.app.Sealpost.start_background = probe
sys.argv = ["sealpost", *sys.argv[1:]]
sealpost.cli.main()
print("main returned without serving", flush=True)
"""


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--role", "api"),
        ("serve", "--role", "worker"),
        ("serve", "--role", "smtp"),
        ("serve", "--role", "dispatcher"),
        ("serve", "--acceptor"),  # an SMTP acceptor process started by `serve`
    ],
    ids=["api", "worker", "smtp", "dispatcher", "acceptor"],
)
def test_every_serve_role_runs_with_the_fix_installed_by_main_not_by_an_import(
    args: tuple[str, ...], tmp_path: Path, keys_dir: Path
) -> None:
    port = free_port()
    env = serve_env(
        tmp_path / "data", keys_dir, port, SEALPOST_SMTP_PROCESSES="1", SEALPOST_API_PORT="0"
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [
        line for line in done.stdout.splitlines() if line.split()[0] in ("imported", "serving")
    ]
    assert lines == ["imported False", "serving True"], done.stdout + done.stderr


def test_the_composition_root_installs_it(tmp_path: Path) -> None:
    """``sealpost.app.build``, for what embeds Sealpost without the CLI (benchmarks, tests)."""
    code = (
        "from sealpost.app import build\n"
        "from sealpost.config import Settings\n"
        "from sealpost.pki import asn1\n"
        "before = asn1.installed()\n"
        "build(Settings(), prepare=False)\n"
        "print(before, asn1.installed())\n"
    )
    env = serve_env(tmp_path / "data", tmp_path / "keys", free_port())
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr
