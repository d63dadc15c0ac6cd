"""Signing identities: the embedded local PKI (``sealpost keys init``) and operator key files.

The local PKI is one root CA issuing three leaves: the evidence seal, the TSA (RFC 3161 §2.3:
critical EKU ``timeStamping`` only) and the SMTP TLS server. Keys are written as unencrypted
PKCS#8 PEM, created 0600 from the first byte, never silently overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealpost.pki.errors import KeyMaterialError

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KeyType = Literal["ec-p256", "rsa-3072"]

_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between hosts
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class SigningIdentity:
    """A private key, its certificate and the issuers above it (leaf excluded, root last)."""

    private_key: SigningKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    def chain_pem(self) -> list[str]:
        """PEM of the leaf then every issuer up to the root, as TLS and CMS bundles expect."""
        certs = (self.certificate, *self.chain)
        return [c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs]

    @property
    def fingerprint_sha256(self) -> str:
        """Lower-case hex SHA-256 of the leaf DER, the form evidence records quote."""
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    @property
    def signature_algorithm(self) -> str:
        """The X.509/CMS name of what :meth:`sign` produces."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return "sha256WithRSAEncryption"
        return "ecdsa-with-SHA256"

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 (DER ``Ecdsa-Sig-Value``) or RSA PKCS#1 v1.5 SHA-256 over ``data``."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass(frozen=True)
class KeyFiles:
    """Paths written by :func:`init_keys`."""

    directory: Path
    root_ca_cert: Path
    root_ca_key: Path
    seal_cert: Path
    seal_key: Path
    tsa_cert: Path
    tsa_key: Path
    smtp_tls_cert: Path
    smtp_tls_key: Path
    log_note_key: Path
    """Ed25519 key signing checkpoints as C2SP signed notes (``ledger/note.py``)."""

    @classmethod
    def in_directory(cls, directory: Path) -> KeyFiles:
        """The fixed file names of the local PKI inside ``directory``."""
        d = Path(directory)
        return cls(
            directory=d,
            root_ca_cert=d / "root-ca.pem",
            root_ca_key=d / "root-ca.key",
            seal_cert=d / "seal.pem",
            seal_key=d / "seal.key",
            tsa_cert=d / "tsa.pem",
            tsa_key=d / "tsa.key",
            smtp_tls_cert=d / "smtp-tls.pem",
            smtp_tls_key=d / "smtp-tls.key",
            log_note_key=d / "log-note.key",
        )

    def all_files(self) -> tuple[Path, ...]:
        return (
            self.root_ca_cert,
            self.root_ca_key,
            self.seal_cert,
            self.seal_key,
            self.tsa_cert,
            self.tsa_key,
            self.smtp_tls_cert,
            self.smtp_tls_key,
            self.log_note_key,
        )


@dataclass(frozen=True)
class LocalIdentities:
    """The embedded default: seal and TSA identities and the local root they chain to."""

    seal: SigningIdentity
    tsa: SigningIdentity
    root: x509.Certificate


def _new_key(key_type: KeyType) -> SigningKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise KeyMaterialError(f"unsupported key type {key_type!r}; use 'ec-p256' or 'rsa-3072'")


def _key_usage(*, signature: bool, commitment: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, key: SigningKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + days * _DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue_leaf(
    builder: x509.CertificateBuilder, ca_key: SigningKey, ca_cert: x509.Certificate
) -> x509.Certificate:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _san(hostnames: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    return x509.SubjectAlternativeName(names)


def _pem_key(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_certs(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` atomically at open (O_EXCL refuses files and symlinks)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def init_keys(
    directory: Path,
    *,
    organization: str = "Sealpost",
    hostnames: Sequence[str] = ("localhost",),
    key_type: KeyType = "ec-p256",
    force: bool = False,
    note_key: bool = True,
) -> KeyFiles:
    """Create the local root CA and the seal, TSA and SMTP TLS certificates it issues, and
    the log's note key when ``note_key`` and there is none yet.

    Refuses (KeyMaterialError) to touch existing files unless ``force``: keys are evidence.
    An existing note key is kept, with or without ``force`` (which renews the CA and its
    certificates), and does not count as existing key material: it is the log's identity to
    witnesses and monitors, which pin it (a new one would make every later checkpoint look
    unsigned to them), and may be copied in from another host before the first start.
    """
    files = KeyFiles.in_directory(directory)
    renewed = [p for p in files.all_files() if p != files.log_note_key]
    existing = [p for p in renewed if p.exists() or p.is_symlink()]
    if existing and not force:
        raise KeyMaterialError(
            "key material already exists; pass force=True to replace it", path=existing[0]
        )
    if not hostnames:
        raise KeyMaterialError("at least one SMTP TLS hostname is required")

    root_key = _new_key(key_type)
    root_name = _name(organization, f"{organization} Local Root CA")
    root = (
        _builder(root_name, root_name, root_key, 3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signature=False, commitment=False, cert_sign=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    seal_key = _new_key(key_type)
    seal = _issue_leaf(
        _builder(
            _name(organization, f"{organization} Evidence Seal"), root_name, seal_key, 1095
        ).add_extension(
            _key_usage(signature=True, commitment=True, cert_sign=False), critical=True
        ),
        root_key,
        root,
    )
    tsa_key = _new_key(key_type)
    tsa = _issue_leaf(
        _builder(
            _name(organization, f"{organization} Time-Stamping Authority"), root_name, tsa_key, 1095
        )
        .add_extension(_key_usage(signature=True, commitment=True, cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True),
        root_key,
        root,
    )
    tls_key = _new_key(key_type)
    tls = _issue_leaf(
        _builder(_name(organization, hostnames[0]), root_name, tls_key, 365)
        .add_extension(_san(hostnames), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False),
        root_key,
        root,
    )

    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(files.directory, 0o700)  # mkdir's mode is filtered by umask and ignored if it exists
    for path in existing:
        path.unlink()
    for path, key in (
        (files.root_ca_key, root_key),
        (files.seal_key, seal_key),
        (files.tsa_key, tsa_key),
        (files.smtp_tls_key, tls_key),
    ):
        _write_new(path, _pem_key(key), 0o600)
    if note_key and not (files.log_note_key.exists() or files.log_note_key.is_symlink()):
        with contextlib.suppress(FileExistsError):  # made meanwhile by a starting process
            init_note_key(files.log_note_key)
    _write_new(files.root_ca_cert, _pem_certs(root), 0o644)
    _write_new(files.seal_cert, _pem_certs(seal), 0o644)
    _write_new(files.tsa_cert, _pem_certs(tsa), 0o644)
    _write_new(files.smtp_tls_cert, _pem_certs(tls, root), 0o644)
    return files


def init_note_key(path: Path) -> None:
    """Write a new Ed25519 key for the log's signed notes at ``path`` (0600, never over an
    existing file: the key is the log's public identity to witnesses and monitors)."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # whole or absent: written aside under a fresh name (mkstemp: 0600, never a leftover of a
    # killed process), then linked in: FileExistsError if another process won, its key stays
    fd, aside = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.link(aside, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)


def load_note_key(path: Path) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 key written by :func:`init_note_key` (PEM PKCS#8)."""
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyMaterialError("not an unencrypted PEM private key", path=path) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyMaterialError(
            f"the log's note key must be Ed25519, not {type(key).__name__}", path=path
        )
    return key


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError("file not found", path=path) from None
    except OSError as exc:
        raise KeyMaterialError(f"cannot read file: {exc.strerror}", path=path) from None


def _load_pem_certs(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path))
    except ValueError:
        raise KeyMaterialError("no valid PEM certificate in file", path=path) from None
    return certs


def _check_key(key: object, path: Path) -> SigningKey:
    if not isinstance(key, SigningKey):
        raise KeyMaterialError(
            f"unsupported key type {type(key).__name__}; use an EC or RSA key", path=path
        )
    return key


def _public_der(obj: SigningKey | x509.Certificate) -> bytes:
    return obj.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True if ``issuer``'s name and key issued ``cert`` (signature checked, not validity)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _identity(
    key: SigningKey, leaf: x509.Certificate, others: Sequence[x509.Certificate], path: Path
) -> SigningIdentity:
    """Check key and leaf match, then order the issuers leaf→root.

    Certificates that are not on the leaf's issuer path (e.g. extra roots in a CA bundle) are
    dropped: ``chain`` must be exactly the path a verifier walks.
    """
    if _public_der(key) != _public_der(leaf):
        raise KeyMaterialError("private key does not match the certificate", path=path)
    chain: list[x509.Certificate] = []
    current = leaf
    pool = [c for c in others if c != leaf]
    while current.issuer != current.subject or not issued_by(current, current):
        issuer = next((c for c in pool if c not in chain and issued_by(current, c)), None)
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    return SigningIdentity(private_key=key, certificate=leaf, chain=tuple(chain))


def load_identity(
    cert_path: Path,
    key_path: Path,
    *,
    password: bytes | None = None,
    chain_path: Path | None = None,
) -> SigningIdentity:
    """Load an operator's PEM certificate (leaf first, issuers may follow) and PEM/DER key."""
    certs = _load_pem_certs(cert_path)
    if chain_path is not None:
        certs += _load_pem_certs(chain_path)
    data = _read(key_path)
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=password)
    except TypeError as exc:  # password given for a clear key, or missing for an encrypted one
        raise KeyMaterialError(f"cannot load private key: {exc}", path=key_path) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError(
            "cannot load private key: wrong password or not a private key", path=key_path
        ) from None
    return _identity(_check_key(key, key_path), certs[0], certs[1:], cert_path)


def load_pkcs12(path: Path, password: bytes | None) -> SigningIdentity:
    """Load an operator's PKCS#12 (.p12/.pfx) holding the key, its certificate and issuers."""
    data = _read(path)
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyMaterialError(
            "cannot open PKCS#12: wrong password or corrupt file", path=path
        ) from None
    if key is None or cert is None:
        raise KeyMaterialError("PKCS#12 must hold a private key and its certificate", path=path)
    return _identity(_check_key(key, path), cert, extra, path)


def load_local_identities(directory: Path) -> LocalIdentities:
    """The seal and TSA identities written by :func:`init_keys` in ``directory``."""
    files = KeyFiles.in_directory(directory)
    root = _load_pem_certs(files.root_ca_cert)[0]
    seal = load_identity(files.seal_cert, files.seal_key, chain_path=files.root_ca_cert)
    tsa = load_identity(files.tsa_cert, files.tsa_key, chain_path=files.root_ca_cert)
    return LocalIdentities(seal=seal, tsa=tsa, root=root)
