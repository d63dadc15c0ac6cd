"""RFC 3161 client (embedded and over real local HTTP) and offline token verification."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from sealpost.errors import ServiceUnavailable
from sealpost.ledger.timestamps import (
    EmbeddedTimeStamper,
    HttpTimeStamper,
    TimeStamper,
    TimestampError,
    TimestampInfo,
    TimestampUnavailable,
    verify_timestamp_token,
)
from sealpost.pki.keys import KeyFiles, LocalIdentities, SigningIdentity, init_keys
from sealpost.pki.keys import load_local_identities as load_ids
from sealpost.pki.tsa import EmbeddedTSA, TimeStampResp, sign_tst_info

DATA = b"seal signature over checkpoint 42"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return init_keys(tmp_path_factory.mktemp("ts") / "keys")


@pytest.fixture(scope="module")
def ids(files: KeyFiles) -> LocalIdentities:
    return load_ids(files.directory)


@pytest.fixture(scope="module")
def tsa(ids: LocalIdentities) -> EmbeddedTSA:
    return EmbeddedTSA(ids.tsa)


@pytest.fixture(scope="module")
def token(tsa: EmbeddedTSA) -> bytes:
    return EmbeddedTimeStamper(tsa).stamp(DATA)


def _reason(token: bytes, data: bytes = DATA, **kwargs: Any) -> str:
    with pytest.raises(TimestampError) as info:
        verify_timestamp_token(token, data, **kwargs)
    assert info.value.status == 422
    assert info.value.message
    return info.value.reason


# --- a real local HTTP TSA ----------------------------------------------------------------

Reply = Callable[[BaseHTTPRequestHandler, bytes], None]


def _send(handler: BaseHTTPRequestHandler, body: bytes, ctype: str, code: int = 200) -> None:
    handler.send_response(code)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def http_tsa(reply: Reply) -> Iterator[str]:
    """A stdlib HTTP server on 127.0.0.1:<free port> answering POSTs with ``reply``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with contextlib.suppress(OSError):  # the client gave up (timeout test)
                reply(self, body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tsa"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _tsa_reply(tsa: EmbeddedTSA) -> Reply:
    def reply(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.headers.get("Content-Type") != "application/timestamp-query":
            _send(handler, b"wrong type", "text/plain", 415)
            return
        _send(handler, tsa.respond(body), "application/timestamp-reply")

    return reply


def test_http_stamp_then_verify(tsa: EmbeddedTSA, ids: LocalIdentities) -> None:
    with http_tsa(_tsa_reply(tsa)) as url, HttpTimeStamper(url, timeout=5) as stamper:
        token = stamper.stamp(DATA)
        again = stamper.stamp(DATA)  # the pooled client is reusable
    info = verify_timestamp_token(token, DATA, trust_roots=[ids.root])
    assert info.message_digest == hashlib.sha256(DATA).digest()
    assert again != token


def test_http_basic_auth(tsa: EmbeddedTSA) -> None:
    expected = "Basic " + base64.b64encode(b"alice:pw").decode()
    inner = _tsa_reply(tsa)

    def reply(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if handler.headers.get("Authorization") != expected:
            _send(handler, b"who are you", "text/plain", 401)
        else:
            inner(handler, body)

    with http_tsa(reply) as url:
        with HttpTimeStamper(url, auth=("alice", "pw")) as stamper:
            assert stamper.stamp(DATA)
        with HttpTimeStamper(url) as anonymous, pytest.raises(TimestampError) as info:
            anonymous.stamp(DATA)
    assert info.value.reason == "http-status"
    assert "401" in info.value.message


def test_http_rejection_carries_the_status_text() -> None:
    def reply(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        status = {
            "status": "rejection",
            "status_string": ["TSA closed for maintenance"],
            "fail_info": {"time_not_available"},
        }
        _send(handler, TimeStampResp({"status": status}).dump(), "application/timestamp-reply")

    with (
        http_tsa(reply) as url,
        HttpTimeStamper(url) as stamper,
        pytest.raises(TimestampError) as info,
    ):
        stamper.stamp(DATA)
    assert not isinstance(info.value, TimestampUnavailable)
    assert info.value.reason == "rejected"
    assert "TSA closed for maintenance" in info.value.message
    assert "time_not_available" in info.value.message


def test_http_wrong_content_type_and_server_error(tsa: EmbeddedTSA) -> None:
    def html(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        _send(handler, tsa.respond(body), "text/html")

    with (
        http_tsa(html) as url,
        HttpTimeStamper(url) as stamper,
        pytest.raises(TimestampError) as info,
    ):
        stamper.stamp(DATA)
    assert info.value.reason == "bad-response"

    def broken(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        _send(handler, b"oops", "text/plain", 503)

    with (
        http_tsa(broken) as url,
        HttpTimeStamper(url) as stamper,
        pytest.raises(TimestampUnavailable),
    ):
        stamper.stamp(DATA)


def test_http_closed_port_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        HttpTimeStamper(f"http://127.0.0.1:{port}/", timeout=2) as stamper,
        pytest.raises(TimestampUnavailable) as info,
    ):
        stamper.stamp(DATA)
    assert info.value.status == 503
    assert isinstance(info.value, ServiceUnavailable)
    assert isinstance(info.value, TimestampError)


def test_http_slow_server_times_out(tsa: EmbeddedTSA) -> None:
    def slow(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        time.sleep(1.0)
        _send(handler, tsa.respond(body), "application/timestamp-reply")

    with http_tsa(slow) as url, HttpTimeStamper(url, timeout=0.2) as stamper:
        started = time.monotonic()
        with pytest.raises(TimestampUnavailable) as info:
            stamper.stamp(DATA)
        assert time.monotonic() - started < 0.9
    assert info.value.status == 503


# --- the client's own checks (through the _transport seam) --------------------------------


class _Rewriting(TimeStamper):
    """A TSA that answers another request than the one it received."""

    def __init__(self, tsa: EmbeddedTSA, change: Callable[[dict[str, Any]], None]) -> None:
        self.tsa, self.change = tsa, change

    def _transport(self, request_der: bytes) -> bytes:
        fields = dict(tsp.TimeStampReq.load(request_der).native)
        self.change(fields)
        return self.tsa.respond(tsp.TimeStampReq(fields).dump())


def _other_imprint(fields: dict[str, Any]) -> None:
    fields["message_imprint"] = {
        "hash_algorithm": {"algorithm": "sha256"},
        "hashed_message": hashlib.sha256(b"other").digest(),
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda f: f.update(nonce=f["nonce"] + 1), "nonce-mismatch"),
        (_other_imprint, "imprint-mismatch"),
    ],
)
def test_client_refuses_a_reply_to_another_request(
    tsa: EmbeddedTSA, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    with pytest.raises(TimestampError) as info:
        _Rewriting(tsa, change).stamp(DATA)
    assert info.value.reason == reason


def test_client_refuses_garbage_reply(tsa: EmbeddedTSA) -> None:
    class Garbage(TimeStamper):
        def _transport(self, request_der: bytes) -> bytes:
            return b"<html>proxy error</html>"

    with pytest.raises(TimestampError) as info:
        Garbage().stamp(DATA)
    assert info.value.reason == "bad-response"


# --- verification -------------------------------------------------------------------------


def test_good_token_verifies(tsa: EmbeddedTSA, ids: LocalIdentities) -> None:
    before = dt.datetime.now(dt.UTC)
    token = EmbeddedTimeStamper(tsa).stamp(DATA)
    info = verify_timestamp_token(token, DATA, trust_roots=[ids.root])
    assert isinstance(info, TimestampInfo)
    assert abs(info.gen_time - before) < dt.timedelta(seconds=1)
    assert info.gen_time.tzinfo is not None
    assert info.hash_algorithm == "sha256"
    assert info.message_digest == hashlib.sha256(DATA).digest()
    assert info.tsa_certificate == ids.tsa.certificate
    assert info.policy_oid == "1.3.6.1.4.1.61017.1.1"
    assert info.serial_number > 0
    assert info.nonce is not None


def test_rsa_token_verifies(tmp_path: Path) -> None:
    rsa_ids = load_ids(init_keys(tmp_path / "rsa", key_type="rsa-3072").directory)
    token = EmbeddedTimeStamper(EmbeddedTSA(rsa_ids.tsa)).stamp(DATA)
    info = verify_timestamp_token(token, DATA, trust_roots=[rsa_ids.root])
    assert info.tsa_certificate == rsa_ids.tsa.certificate


def test_token_without_certificates_needs_extra(tsa: EmbeddedTSA, ids: LocalIdentities) -> None:
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha512"},
                "hashed_message": hashlib.sha512(DATA).digest(),
            },
        }
    )
    token = TimeStampResp.load(tsa.respond(request.dump()))["time_stamp_token"].dump()
    assert _reason(token, trust_roots=[ids.root]) == "no-signer-cert"
    info = verify_timestamp_token(
        token, DATA, trust_roots=[ids.root], extra_certificates=[ids.tsa.certificate]
    )
    assert info.hash_algorithm == "sha512"
    assert info.nonce is None


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


def test_flipped_signature_byte(token: bytes, ids: LocalIdentities) -> None:
    signature = cms.ContentInfo.load(token)["content"]["signer_infos"][0]["signature"].native
    at = token.index(signature) + len(signature) - 3
    assert _reason(_flip(token, at), trust_roots=[ids.root]) == "bad-signature"


def test_flipped_tstinfo_byte(token: bytes, ids: LocalIdentities) -> None:
    econtent = bytes(cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"])
    at = token.index(econtent) + len(econtent) - 10
    assert _reason(_flip(token, at), trust_roots=[ids.root]) == "digest-mismatch"


def test_signer_found_by_subject_key_identifier(token: bytes, ids: LocalIdentities) -> None:
    """RFC 5652 §5.3 allows either SignerIdentifier; the sid itself is not signed."""
    parsed = cms.ContentInfo.load(token)
    ski = ids.tsa.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    parsed["content"]["signer_infos"][0]["sid"] = cms.SignerIdentifier(
        name="subject_key_identifier", value=ski.value.digest
    )
    info = verify_timestamp_token(parsed.dump(force=True), DATA, trust_roots=[ids.root])
    assert info.tsa_certificate == ids.tsa.certificate


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_corruption_is_a_timestamp_error(
    token: bytes, ids: LocalIdentities, data: st.DataObject
) -> None:
    """Flip one byte anywhere, or cut the token: TimestampError, never another exception.

    A flip in an unsigned, unused part (e.g. the copy of the root in ``certificates``) may
    still verify; then it must assert exactly what the intact token asserts.
    """
    at = data.draw(st.integers(0, len(token) - 1))
    corrupt = _flip(token, at) if data.draw(st.booleans()) else token[:at]
    try:
        info = verify_timestamp_token(corrupt, DATA, trust_roots=[ids.root])
    except TimestampError:
        return
    intact = verify_timestamp_token(token, DATA, trust_roots=[ids.root])
    assert info == intact


def test_other_data(token: bytes, ids: LocalIdentities) -> None:
    assert _reason(token, DATA + b"!", trust_roots=[ids.root]) == "imprint-mismatch"


def test_untrusted_root(token: bytes, tmp_path: Path) -> None:
    stranger = load_ids(init_keys(tmp_path / "other").directory).root
    assert stranger.subject == load_ids(tmp_path / "other").root.subject
    assert _reason(token, trust_roots=[stranger]) == "untrusted-chain"
    assert _reason(token, trust_roots=[]) == "untrusted-chain"


def test_not_a_token(token: bytes, ids: LocalIdentities) -> None:
    data_ci = cms.ContentInfo({"content_type": "data", "content": b"hi"}).dump()
    for junk in (b"", b"\x30\x03\x02\x01", data_ci, token + b"\x00", token[:-1]):
        assert _reason(junk, trust_roots=[ids.root]) == "not-a-token", junk[:8]


TS_EKU = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING])


def _cert_like_tsa(
    files: KeyFiles,
    ids: LocalIdentities,
    eku: x509.ExtendedKeyUsage | None,
    critical: bool = True,
    issuer: SigningIdentity | None = None,
) -> x509.Certificate:
    """The TSA's key and name in a new certificate, issued by the root unless ``issuer``."""
    tsa_cert = ids.tsa.certificate
    if issuer is None:
        root_key = serialization.load_pem_private_key(files.root_ca_key.read_bytes(), None)
        assert isinstance(root_key, ec.EllipticCurvePrivateKey)
        issuer = SigningIdentity(root_key, ids.root)
    builder = (
        x509.CertificateBuilder()
        .subject_name(tsa_cert.subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(ids.tsa.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(tsa_cert.not_valid_before_utc)
        .not_valid_after(tsa_cert.not_valid_after_utc)
    )
    if eku is not None:
        builder = builder.add_extension(eku, critical=critical)
    return builder.sign(issuer.private_key, hashes.SHA256())


def _token_from(identity: SigningIdentity, data: bytes = DATA) -> bytes:
    tst = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": "1.3.6.1.4.1.61017.1.1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(data).digest(),
            },
            "serial_number": 7,
            "gen_time": dt.datetime.now(dt.UTC),
        }
    )
    return sign_tst_info(identity, tst, include_certificates=True)


@pytest.mark.parametrize(
    ("eku", "critical"),
    [
        (None, True),
        (TS_EKU, False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), True),
        (
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            True,
        ),
    ],
)
def test_signer_without_critical_timestamping_eku(
    files: KeyFiles, ids: LocalIdentities, eku: x509.ExtendedKeyUsage | None, critical: bool
) -> None:
    cert = _cert_like_tsa(files, ids, eku, critical)
    identity = SigningIdentity(ids.tsa.private_key, cert, (ids.root,))
    assert _reason(_token_from(identity), trust_roots=[ids.root]) == "eku"


def test_hand_built_token_with_good_certificate_verifies(ids: LocalIdentities) -> None:
    info = verify_timestamp_token(_token_from(ids.tsa), DATA, trust_roots=[ids.root])
    assert info.serial_number == 7
    assert info.nonce is None


def test_signing_certificate_must_name_the_signer(files: KeyFiles, ids: LocalIdentities) -> None:
    """Same key, same name, another certificate: the ESS hash no longer matches."""
    twin = _cert_like_tsa(files, ids, TS_EKU)
    token = _token_from(SigningIdentity(ids.tsa.private_key, twin, ()))
    parsed = cms.ContentInfo.load(token)
    signed = parsed["content"]
    original = ids.tsa.certificate.public_bytes(serialization.Encoding.DER)
    signed["certificates"] = [
        cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(original))
    ]
    # the SignerIdentifier is not signed: point it at the original; only ESS can catch this
    sid = signed["signer_infos"][0]["sid"].chosen
    sid["serial_number"] = ids.tsa.certificate.serial_number
    tampered = parsed.dump(force=True)
    assert _reason(tampered, trust_roots=[ids.root]) == "signing-certificate"


def test_certificate_expired_at_gen_time(ids: LocalIdentities) -> None:
    late = EmbeddedTSA(ids.tsa, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=4000))
    token = late.stamp_digest(hashlib.sha256(DATA).digest())
    assert _reason(token, trust_roots=[ids.root]) == "cert-validity"


def test_leaf_issued_by_non_ca_is_untrusted(files: KeyFiles, ids: LocalIdentities) -> None:
    """The seal (not a CA) "issues" a TSA certificate: the chain must not be accepted."""
    seal = ids.seal
    cert = _cert_like_tsa(files, ids, TS_EKU, issuer=seal)
    identity = SigningIdentity(ids.tsa.private_key, cert, (seal.certificate, ids.root))
    assert _reason(_token_from(identity), trust_roots=[ids.root]) == "untrusted-chain"
