"""The embedded RFC 3161 TSA, checked against the real ``openssl ts`` and with bad requests."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, tsp
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from sealpost.pki.errors import PkiError, TimestampRejected
from sealpost.pki.keys import KeyFiles, init_keys, load_local_identities
from sealpost.pki.tsa import DEFAULT_POLICY_OID, EmbeddedTSA, TimeStampResp

OPENSSL = shutil.which("openssl") or ""
needs_openssl = pytest.mark.skipif(not OPENSSL, reason="openssl binary not installed")

SHA256_OID = "2.16.840.1.101.3.4.2.1"


@pytest.fixture(scope="module", params=["ec-p256", "rsa-3072"])
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return init_keys(tmp_path_factory.mktemp(request.param) / "keys", key_type=request.param)


@pytest.fixture(scope="module")
def ec_pki(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return init_keys(tmp_path_factory.mktemp("ec") / "keys")


@pytest.fixture(scope="module")
def ec_tsa(ec_pki: KeyFiles) -> EmbeddedTSA:
    return EmbeddedTSA(load_local_identities(ec_pki.directory).tsa)


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, "ts", *map(str, args)], capture_output=True, text=True, check=False
    )


def _verify(pki: KeyFiles, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return _openssl("-verify", *args, "-CAfile", pki.root_ca_cert, "-untrusted", pki.tsa_cert)


def _request(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": SHA256_OID},
            "hashed_message": hashlib.sha256(b"x").digest(),
        },
        "cert_req": True,
    }
    fields.update(overrides)
    return bytes(tsp.TimeStampReq(fields).dump())


def _imprint(oid: str, digest: bytes) -> dict[str, Any]:
    return {"hash_algorithm": {"algorithm": oid}, "hashed_message": digest}


# --- openssl interoperability -------------------------------------------------------------


@needs_openssl
def test_openssl_verifies_token(pki: KeyFiles, tmp_path: Path) -> None:
    tsa = EmbeddedTSA(load_local_identities(pki.directory).tsa)
    data = tmp_path / "data.bin"
    data.write_bytes(b"checkpoint signature bytes")
    token = tmp_path / "token.der"
    token.write_bytes(tsa.stamp_digest(hashlib.sha256(data.read_bytes()).digest(), nonce=42))

    ok = _verify(pki, "-in", token, "-token_in", "-data", data)
    assert ok.returncode == 0, ok.stderr
    assert "Verification: OK" in ok.stdout

    other = tmp_path / "other.bin"
    other.write_bytes(b"checkpoint signature bytez")
    bad = _verify(pki, "-in", token, "-token_in", "-data", other)
    assert bad.returncode != 0
    assert "Verification: OK" not in bad.stdout
    assert "message imprint mismatch" in bad.stderr


@needs_openssl
def test_openssl_query_reply_verify(pki: KeyFiles, tmp_path: Path) -> None:
    tsa = EmbeddedTSA(load_local_identities(pki.directory).tsa)
    data, query, reply = tmp_path / "f", tmp_path / "req.tsq", tmp_path / "resp.tsr"
    data.write_bytes(b"hello evidence")
    made = _openssl("-query", "-data", data, "-sha256", "-cert", "-out", query)
    assert made.returncode == 0, made.stderr
    reply.write_bytes(tsa.respond(query.read_bytes()))

    text = _openssl("-reply", "-in", reply, "-text")
    assert text.returncode == 0, text.stderr
    assert "Status: Granted" in text.stdout
    assert f"Policy OID: {DEFAULT_POLICY_OID}" in text.stdout
    assert "Accuracy: 0x01 seconds" in text.stdout

    for check in (("-queryfile", query), ("-data", data)):
        ok = _verify(pki, "-in", reply, *check)
        assert ok.returncode == 0, ok.stderr
        assert "Verification: OK" in ok.stdout


@needs_openssl
def test_openssl_query_without_cert_needs_untrusted(
    ec_pki: KeyFiles, ec_tsa: EmbeddedTSA, tmp_path: Path
) -> None:
    data, query, reply = tmp_path / "f", tmp_path / "req.tsq", tmp_path / "resp.tsr"
    data.write_bytes(b"no certs please")
    assert _openssl("-query", "-data", data, "-sha512", "-out", query).returncode == 0
    reply.write_bytes(ec_tsa.respond(query.read_bytes()))
    resp = TimeStampResp.load(reply.read_bytes())
    assert resp["time_stamp_token"]["content"]["certificates"].native is None
    ok = _verify(ec_pki, "-in", reply, "-queryfile", query)
    assert "Verification: OK" in ok.stdout, ok.stderr


# --- token contents -----------------------------------------------------------------------


def test_token_fields(ec_tsa: EmbeddedTSA) -> None:
    fixed = dt.datetime(2031, 5, 6, 7, 8, 9, 123400, tzinfo=dt.UTC)
    tsa = EmbeddedTSA(ec_tsa.identity, accuracy_ms=1500, clock=lambda: fixed)
    digest = hashlib.sha384(b"data").digest()
    token = cms.ContentInfo.load(tsa.stamp_digest(digest, "sha384", nonce=2**70 + 3))
    signed = token["content"]
    assert signed["version"].native == "v3"
    assert signed["encap_content_info"]["content_type"].native == "tst_info"
    tst = signed["encap_content_info"]["content"].parsed
    assert tst["version"].native == "v1"
    assert tst["policy"].dotted == DEFAULT_POLICY_OID
    assert tst["message_imprint"]["hashed_message"].native == digest
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha384"
    assert tst["nonce"].native == 2**70 + 3
    assert tst["gen_time"].native == fixed
    assert tst["gen_time"].contents == b"20310506070809.1234Z"  # fraction, no trailing zero
    assert tst["accuracy"].native == {"seconds": 1, "millis": 500, "micros": None}
    assert tst["ordering"].native is False
    assert tst["serial_number"].native > 0

    signer = signed["signer_infos"][0]
    assert signer["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    attrs = {a["type"].native: a["values"][0] for a in signer["signed_attrs"]}
    assert set(attrs) == {"content_type", "message_digest", "signing_certificate_v2"}
    assert attrs["message_digest"].native == hashlib.sha256(tst.dump()).digest()
    cert_der = ec_tsa.identity.certificate.public_bytes(serialization.Encoding.DER)
    ess = attrs["signing_certificate_v2"]["certs"][0]
    assert ess["cert_hash"].native == hashlib.sha256(cert_der).digest()
    certs = [c.chosen.dump() for c in signed["certificates"]]
    assert cert_der in certs  # a SET OF: DER sorts it, the signer is not necessarily first
    assert len(certs) == 2  # TSA certificate and the root


def test_serial_numbers_are_unique(ec_tsa: EmbeddedTSA) -> None:
    serials = set()
    for _ in range(50):
        token = cms.ContentInfo.load(ec_tsa.stamp_digest(bytes(32)))
        serials.add(
            token["content"]["encap_content_info"]["content"].parsed["serial_number"].native
        )
    assert len(serials) == 50


def test_rsa_token_uses_sha256_with_rsa(pki: KeyFiles) -> None:
    ident = load_local_identities(pki.directory).tsa
    token = cms.ContentInfo.load(EmbeddedTSA(ident).stamp_digest(bytes(32)))
    algo = token["content"]["signer_infos"][0]["signature_algorithm"]["algorithm"].native
    expected = (
        "sha256_rsa" if ident.signature_algorithm == "sha256WithRSAEncryption" else "sha256_ecdsa"
    )
    assert algo == expected


def test_tsa_refuses_certificate_without_timestamping_eku(ec_pki: KeyFiles) -> None:
    seal = load_local_identities(ec_pki.directory).seal
    with pytest.raises(PkiError, match="timeStamping"):
        EmbeddedTSA(seal)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"policy_oid": "not-an-oid"}, "dotted OID"), ({"accuracy_ms": -1}, ">= 0")],
)
def test_tsa_refuses_bad_configuration(
    ec_tsa: EmbeddedTSA, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(PkiError, match=match):
        EmbeddedTSA(ec_tsa.identity, **kwargs)


def test_naive_clock_is_taken_as_utc(ec_tsa: EmbeddedTSA) -> None:
    naive = dt.datetime(2030, 1, 2, 3, 4, 5)  # naive on purpose
    tsa = EmbeddedTSA(ec_tsa.identity, accuracy_ms=0, clock=lambda: naive)
    tst = cms.ContentInfo.load(tsa.stamp_digest(bytes(32)))["content"]["encap_content_info"]
    assert tst["content"].parsed["gen_time"].native == naive.replace(tzinfo=dt.UTC)
    assert tst["content"].parsed["accuracy"].native is None


def test_stamp_digest_raises_on_rejection(ec_tsa: EmbeddedTSA) -> None:
    with pytest.raises(TimestampRejected) as info:
        ec_tsa.stamp_digest(hashlib.sha1(b"x").digest(), "1.3.14.3.2.26")  # noqa: S324
    assert info.value.fail_info == ("bad_alg",)
    assert info.value.status == 422


# --- rejections ---------------------------------------------------------------------------

_GOOD = _request()

REJECTIONS = {
    "garbage": (b"\x00garbage\xff", "bad_data_format"),
    "empty": (b"", "bad_data_format"),
    "truncated": (_GOOD[:-5], "bad_data_format"),
    "trailing-data": (_GOOD + b"\x00", "bad_data_format"),
    "sha1": (
        _request(message_imprint=_imprint("1.3.14.3.2.26", bytes(20))),
        "bad_alg",
    ),
    "md5": (
        _request(message_imprint=_imprint("1.2.840.113549.2.5", bytes(16))),
        "bad_alg",
    ),
    "unknown-alg": (_request(message_imprint=_imprint("1.2.3.4", bytes(32))), "bad_alg"),
    "short-digest": (_request(message_imprint=_imprint(SHA256_OID, bytes(31))), "bad_data_format"),
    "sha512-oid-sha256-length": (
        _request(message_imprint=_imprint("2.16.840.1.101.3.4.2.3", bytes(32))),
        "bad_data_format",
    ),
    "unknown-policy": (_request(req_policy="1.2.3.4.5"), "unaccepted_policy"),
    "extensions": (
        _request(extensions=[{"extn_id": "1.2.3.4", "critical": False, "extn_value": b"x"}]),
        "unaccepted_extensions",
    ),
    "version-2": (_request(version="v2"), "bad_request"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_bad_requests_get_a_der_rejection(case: str, ec_tsa: EmbeddedTSA, tmp_path: Path) -> None:
    request, fail_bit = REJECTIONS[case]
    reply = ec_tsa.respond(request)
    resp = TimeStampResp.load(reply, strict=True)
    status = resp["status"]
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {fail_bit}
    assert status["status_string"].native
    assert status["status_string"].native[0].strip()
    assert resp["time_stamp_token"].native is None

    if OPENSSL:
        (tmp_path / "resp.tsr").write_bytes(reply)
        text = _openssl("-reply", "-in", tmp_path / "resp.tsr", "-text")
        assert text.returncode == 0, text.stderr
        assert "Status: Rejected" in text.stdout


def test_requested_policy_that_matches_is_granted(ec_tsa: EmbeddedTSA) -> None:
    resp = TimeStampResp.load(ec_tsa.respond(_request(req_policy=DEFAULT_POLICY_OID)))
    assert resp["status"]["status"].native == "granted"


@settings(max_examples=300, deadline=None)
@given(junk=st.binary(max_size=400))
def test_random_bytes_always_get_a_rejection(ec_tsa: EmbeddedTSA, junk: bytes) -> None:
    resp = TimeStampResp.load(ec_tsa.respond(junk), strict=True)
    assert resp["status"]["status"].native == "rejection"
    assert resp["status"]["fail_info"].native
    assert resp["status"]["status_string"].native


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_requests_never_raise(ec_tsa: EmbeddedTSA, data: st.DataObject) -> None:
    """Flip and cut bytes of a valid request: the answer is always a DER TimeStampResp."""
    request = bytearray(_GOOD)
    index = data.draw(st.integers(0, len(request) - 1))
    request[index] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(request)))
    resp = TimeStampResp.load(ec_tsa.respond(bytes(request[:cut])), strict=True)
    assert resp["status"]["status"].native in ("granted", "rejection")
