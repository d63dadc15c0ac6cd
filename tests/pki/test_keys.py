"""Local PKI creation and loading of operator key files (PEM, PKCS#12)."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealpost.errors import SealpostError
from sealpost.pki.errors import KeyMaterialError, PkiError
from sealpost.pki.keys import (
    KeyFiles,
    SigningIdentity,
    init_keys,
    load_identity,
    load_local_identities,
    load_pkcs12,
)

OPENSSL = shutil.which("openssl") or ""
OperatorPki = tuple[
    ec.EllipticCurvePrivateKey, x509.Certificate, x509.Certificate, x509.Certificate
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return init_keys(
        tmp_path_factory.mktemp("keys") / "pki",
        organization="Acme Evidence",
        hostnames=("mail.example.test", "localhost"),
    )


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


E = TypeVar("E", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


def test_init_keys_creates_every_file_with_private_modes(files: KeyFiles) -> None:
    names = sorted(p.name for p in files.directory.iterdir())
    assert names == sorted(p.name for p in files.all_files())
    assert len(names) == 9  # four keys and certificates, and the log's Ed25519 note key
    assert stat.S_IMODE(files.directory.stat().st_mode) == 0o700
    for key in files.directory.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, clear


def test_root_ca_profile(files: KeyFiles) -> None:
    root = _cert(files.root_ca_cert)
    bc = _ext(root, x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    ku = _ext(root, x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert _ext(root, x509.SubjectKeyIdentifier)
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert lifetime >= dt.timedelta(days=3650)
    root.verify_directly_issued_by(root)


def test_tsa_certificate_has_critical_timestamping_eku_only(files: KeyFiles) -> None:
    tsa = _cert(files.tsa_cert)
    eku = _ext(tsa, x509.ExtendedKeyUsage)
    assert eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    ku = _ext(tsa, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.content_commitment


def test_seal_certificate_profile(files: KeyFiles) -> None:
    seal = _cert(files.seal_cert)
    cn = seal.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "Acme Evidence Evidence Seal"
    with pytest.raises(x509.ExtensionNotFound):
        _ext(seal, x509.ExtendedKeyUsage)
    ku = _ext(seal, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.content_commitment
    root_ski = _ext(_cert(files.root_ca_cert), x509.SubjectKeyIdentifier).value
    aki = _ext(seal, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest


def test_smtp_tls_certificate_and_bundle(files: KeyFiles) -> None:
    leaf, root = x509.load_pem_x509_certificates(files.smtp_tls_cert.read_bytes())
    assert root == _cert(files.root_ca_cert)
    san = _ext(leaf, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.example.test", "localhost"]
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert ips == {"127.0.0.1", "::1"}
    eku = _ext(leaf, x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_every_leaf_chains_to_the_root(files: KeyFiles) -> None:
    root = _cert(files.root_ca_cert)
    now = dt.datetime.now(dt.UTC)
    for path in (files.seal_cert, files.tsa_cert, files.smtp_tls_cert):
        leaf = _cert(path)
        leaf.verify_directly_issued_by(root)
        assert leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc


@pytest.mark.skipif(not OPENSSL, reason="openssl binary not installed")
@pytest.mark.parametrize(
    ("attr", "purpose"),
    [("tsa_cert", "timestampsign"), ("smtp_tls_cert", "sslserver"), ("seal_cert", "any")],
)
def test_openssl_verifies_chain_and_purpose(files: KeyFiles, attr: str, purpose: str) -> None:
    cert = getattr(files, attr)
    result = subprocess.run(
        [OPENSSL, "verify", "-purpose", purpose, "-CAfile", files.root_ca_cert, cert],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{cert}: OK" in result.stdout


def test_rerun_refuses_to_overwrite_then_force_replaces(tmp_path: Path) -> None:
    first = init_keys(tmp_path / "k")
    before = first.tsa_key.read_bytes()
    with pytest.raises(KeyMaterialError) as info:
        init_keys(tmp_path / "k")
    assert info.value.path is not None
    assert info.value.path.parent == tmp_path / "k"
    assert first.tsa_key.read_bytes() == before
    second = init_keys(tmp_path / "k", force=True)
    assert second.tsa_key.read_bytes() != before
    assert stat.S_IMODE(second.tsa_key.stat().st_mode) == 0o600


def test_one_existing_file_is_enough_to_refuse(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "seal.key").write_text("operator's key")
    with pytest.raises(KeyMaterialError, match="already exists"):
        init_keys(tmp_path / "k")
    assert (tmp_path / "k" / "seal.key").read_text() == "operator's key"


def test_rsa_keys_and_signatures(tmp_path: Path) -> None:
    files = init_keys(tmp_path / "rsa", key_type="rsa-3072")
    ids = load_local_identities(files.directory)
    key = ids.seal.private_key
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 3072
    assert ids.seal.signature_algorithm == "sha256WithRSAEncryption"
    pub = ids.seal.certificate.public_key()
    assert isinstance(pub, rsa.RSAPublicKey)
    pub.verify(ids.seal.sign(b"head"), b"head", padding.PKCS1v15(), hashes.SHA256())


def test_load_local_identities(files: KeyFiles) -> None:
    ids = load_local_identities(files.directory)
    root = _cert(files.root_ca_cert)
    assert ids.root == root
    assert ids.seal.chain == (root,)
    assert ids.tsa.chain == (root,)
    assert ids.tsa.certificate == _cert(files.tsa_cert)
    assert ids.seal.signature_algorithm == "ecdsa-with-SHA256"
    pub = ids.seal.certificate.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(ids.seal.sign(b"head"), b"head", ec.ECDSA(hashes.SHA256()))
    assert ids.seal.fingerprint_sha256 == ids.seal.certificate.fingerprint(hashes.SHA256()).hex()
    assert len(ids.seal.fingerprint_sha256) == 64
    pems = ids.seal.chain_pem()
    assert [x509.load_pem_x509_certificate(p.encode()) for p in pems] == [
        ids.seal.certificate,
        root,
    ]


# --- operator files -----------------------------------------------------------------------


def _ca(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def operator_pki() -> OperatorPki:
    """A three-level operator PKI: root → intermediate → seal leaf."""
    root_key, int_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca("Operator Root", root_key, None, ca=True)
    inter = _ca("Operator Intermediate", int_key, (root.subject, root_key), ca=True)
    leaf = _ca("Operator Seal", leaf_key, (inter.subject, int_key), ca=False)
    return leaf_key, leaf, inter, root


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_operator_pem_with_unordered_chain_and_encrypted_key(
    tmp_path: Path, operator_pki: OperatorPki
) -> None:
    key, leaf, inter, root = operator_pki
    (tmp_path / "seal.pem").write_bytes(_pem(leaf, root, inter))  # issuers out of order
    (tmp_path / "seal.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    ident = load_identity(tmp_path / "seal.pem", tmp_path / "seal.key", password=b"s3cret")
    assert ident.certificate == leaf
    assert ident.chain == (inter, root)
    with pytest.raises(KeyMaterialError) as info:
        load_identity(tmp_path / "seal.pem", tmp_path / "seal.key", password=b"wrong")
    assert info.value.path == tmp_path / "seal.key"
    with pytest.raises(KeyMaterialError, match="not given"):
        load_identity(tmp_path / "seal.pem", tmp_path / "seal.key")


def test_operator_chain_path_adds_issuers(tmp_path: Path, operator_pki: OperatorPki) -> None:
    key, leaf, inter, root = operator_pki
    unrelated = _ca("Some Other Root", ec.generate_private_key(ec.SECP256R1()), None, ca=True)
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    (tmp_path / "chain.pem").write_bytes(_pem(unrelated, root, inter))
    (tmp_path / "leaf.der").write_bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ident = load_identity(
        tmp_path / "leaf.pem", tmp_path / "leaf.der", chain_path=tmp_path / "chain.pem"
    )
    assert ident.chain == (inter, root)  # the unrelated root is not on the path


def test_pkcs12_with_password(tmp_path: Path, operator_pki: OperatorPki) -> None:
    key, leaf, inter, root = operator_pki
    p12 = tmp_path / "seal.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"seal", key, leaf, [root, inter], serialization.BestAvailableEncryption(b"pfx-pass")
        )
    )
    ident = load_pkcs12(p12, b"pfx-pass")
    assert isinstance(ident, SigningIdentity)
    assert ident.certificate == leaf
    assert ident.chain == (inter, root)
    with pytest.raises(KeyMaterialError) as info:
        load_pkcs12(p12, b"not-the-pass")
    assert info.value.path == p12
    assert str(p12) in str(info.value)
    assert info.value.status == 500
    assert isinstance(info.value, PkiError)
    assert isinstance(info.value, SealpostError)


def test_pkcs12_without_key_is_refused(tmp_path: Path, operator_pki: OperatorPki) -> None:
    _, leaf, _, _ = operator_pki
    p12 = tmp_path / "certonly.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"x", None, None, [leaf], serialization.NoEncryption()
        )
    )
    with pytest.raises(KeyMaterialError, match="private key and its certificate"):
        load_pkcs12(p12, None)


def test_key_not_matching_certificate(files: KeyFiles) -> None:
    with pytest.raises(KeyMaterialError, match="does not match") as info:
        load_identity(files.seal_cert, files.tsa_key)
    assert info.value.path == files.seal_cert


def test_missing_files_name_the_path(files: KeyFiles, tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="not found") as info:
        load_identity(tmp_path / "nope.pem", files.seal_key)
    assert info.value.path == tmp_path / "nope.pem"
    with pytest.raises(KeyMaterialError) as info:
        load_identity(files.seal_cert, tmp_path / "nope.key")
    assert info.value.path == tmp_path / "nope.key"
    with pytest.raises(KeyMaterialError) as info:
        load_pkcs12(tmp_path / "nope.p12", None)
    assert info.value.path == tmp_path / "nope.p12"


def test_garbage_certificate_file(files: KeyFiles, tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(KeyMaterialError, match="no valid PEM certificate"):
        load_identity(tmp_path / "bad.pem", files.seal_key)


def test_unsupported_key_type(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, None)
    )
    (tmp_path / "ed.pem").write_bytes(_pem(cert))
    (tmp_path / "ed.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyMaterialError, match="unsupported key type") as info:
        load_identity(tmp_path / "ed.pem", tmp_path / "ed.key")
    assert info.value.path == tmp_path / "ed.key"
