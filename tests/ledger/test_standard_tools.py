"""A bundle's seal and timestamp verify with plain openssl, as docs/evidence-format.md shows."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from sealpost.app import Sealpost
from tests.support.records import submission


def openssl(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)


def test_openssl_verifies_the_seal_signature_and_the_timestamp(
    sealpost: Sealpost, tenant_id: str, tmp_path: Path
) -> None:
    record = submission(tenant_id)
    sealpost.log_storage.append([record])
    sealpost.sequencer.seal_pending()
    bundle = sealpost.ledger.bundle(record.id, tenant_id)
    head, certs = bundle["tree_head"], bundle["certificates"]

    (tmp_path / "checkpoint.txt").write_text(head["checkpoint"])
    (tmp_path / "signature.der").write_bytes(base64.b64decode(head["signature"]))
    (tmp_path / "token.der").write_bytes(base64.b64decode(head["timestamp_token"]))
    (tmp_path / "seal.pem").write_text(certs["seal"][0])
    (tmp_path / "root.pem").write_text(certs["seal"][-1])
    (tmp_path / "tsa.pem").write_text("".join(certs["tsa"]))

    openssl("x509", "-in", tmp_path / "seal.pem", "-pubkey", "-noout", "-out", tmp_path / "k.pem")

    def verify_seal() -> subprocess.CompletedProcess[str]:
        args = ["-signature", tmp_path / "signature.der", tmp_path / "checkpoint.txt"]
        return openssl("dgst", "-sha256", "-verify", tmp_path / "k.pem", *args)

    seal = verify_seal()
    assert seal.stdout.strip() == "Verified OK", seal.stderr
    chain = openssl("verify", "-CAfile", tmp_path / "root.pem", tmp_path / "seal.pem")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    stamp = openssl(
        "ts",
        "-verify",
        "-data",
        tmp_path / "signature.der",
        "-in",
        tmp_path / "token.der",
        "-token_in",
        "-CAfile",
        tmp_path / "root.pem",
        "-untrusted",
        tmp_path / "tsa.pem",
    )
    assert "Verification: OK" in stamp.stdout, stamp.stdout + stamp.stderr

    (tmp_path / "checkpoint.txt").write_text(head["checkpoint"].replace("\n1\n", "\n2\n"))
    forged = verify_seal()
    assert "Verification failure" in forged.stdout
