"""RFC 3161 timestamps for tree heads: the client side and offline token verification.

Errors::

    SealpostError
    └── InvalidInput (422)
        └── TimestampError (422)            ``reason``: short machine code, see below
            └── TimestampUnavailable (503)  the TSA cannot be reached; retry later

``TimeStamper`` is the pluggable edge: one subclass per transport, all moving the same DER.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from asn1crypto import cms, core, tsp
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID

from sealpost.errors import InvalidInput, ServiceUnavailable
from sealpost.pki.keys import issued_by
from sealpost.pki.tsa import SUPPORTED_HASHES, EmbeddedTSA, TimeStampResp

_MAX_CHAIN = 8
# asn1crypto and cryptography parse lazily: bad DER deep inside surfaces on first access.
# CryptographyDeprecationWarning (e.g. a negative serial) is raised where warnings are errors.
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, OverflowError, UnsupportedAlgorithm)
_BAD_X509 = (x509.DuplicateExtension, x509.InvalidVersion, CryptographyDeprecationWarning)


class TimestampError(InvalidInput):
    """A timestamp that cannot be obtained or trusted.

    ``reason`` codes: not-a-token, bad-response, rejected, nonce-mismatch, imprint-mismatch,
    digest-mismatch, bad-attributes, no-signer-cert, bad-signature, unsupported-algorithm, eku,
    signing-certificate, untrusted-chain, cert-validity, http-status.
    """

    code = "invalid_timestamp"
    title = "Not a valid RFC 3161 timestamp"
    problem_fields = ("reason",)

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TimestampUnavailable(TimestampError, ServiceUnavailable):
    """The TSA could not be reached or timed out: a transient outage, not a bad token."""

    status = 503
    code = "timestamp_unavailable"
    title = "The timestamping authority is unavailable; retry later"

    def __init__(self, message: str, *, reason: str = "unavailable") -> None:
        super().__init__(message, reason=reason)


@dataclass(frozen=True)
class TimestampInfo:
    """What a verified token asserts (RFC 3161 §2.4.2 TSTInfo) and who asserted it."""

    gen_time: dt.datetime
    """When the TSA saw the imprint, UTC, with the TSA's sub-second precision."""
    serial_number: int
    policy_oid: str
    hash_algorithm: str
    """Imprint algorithm name: sha256, sha384 or sha512."""
    message_digest: bytes
    """The imprint's hashedMessage, equal to hash(data)."""
    tsa_certificate: x509.Certificate
    nonce: int | None


class TimeStamper(ABC):
    """Obtains RFC 3161 tokens; subclasses only move DER bytes (:meth:`_transport`)."""

    def stamp(self, data: bytes) -> bytes:
        """Timestamp SHA-256(``data``); returns the TimeStampToken (ContentInfo DER).

        Checks the reply answers *this* request (nonce and imprint, RFC 3161 §2.4.2); full
        signature and chain checks are :func:`verify_timestamp_token`'s job.
        """
        imprint = {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": _digest(data)}
        nonce = secrets.randbits(64)
        request = tsp.TimeStampReq(
            {"version": "v1", "message_imprint": imprint, "nonce": nonce, "cert_req": True}
        )
        reply = self._transport(request.dump())
        try:
            resp = TimeStampResp.load(reply, strict=True)
            status = resp["status"]["status"].native
        except Exception as exc:  # asn1crypto raises many types for bad DER
            raise TimestampError(
                f"TSA reply is not a TimeStampResp: {exc}", reason="bad-response"
            ) from None
        if status not in ("granted", "granted_with_mods"):
            texts = resp["status"]["status_string"].native or []
            fail = sorted(resp["status"]["fail_info"].native or ())
            detail = "; ".join(texts) or "no status text"
            raise TimestampError(f"TSA refused ({status}, {fail}): {detail}", reason="rejected")
        token = resp["time_stamp_token"]
        try:
            tst = token["content"]["encap_content_info"]["content"].parsed
            got_nonce, got_imprint = tst["nonce"].native, tst["message_imprint"]
        except Exception as exc:
            raise TimestampError(
                f"granted reply holds no token: {exc}", reason="not-a-token"
            ) from None
        if got_nonce != nonce:
            raise TimestampError("TSA did not echo our nonce", reason="nonce-mismatch")
        if got_imprint.dump() != request["message_imprint"].dump():
            raise TimestampError("TSA stamped another imprint", reason="imprint-mismatch")
        return bytes(token.dump())

    @abstractmethod
    def _transport(self, request_der: bytes) -> bytes:
        """Deliver a DER TimeStampReq and return the DER TimeStampResp."""


class HttpTimeStamper(TimeStamper):
    """RFC 3161 §3.4 over HTTP POST; keeps one connection pool, :meth:`close` it when done."""

    def __init__(
        self, url: str, *, timeout: float = 10.0, auth: tuple[str, str] | None = None
    ) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout, auth=httpx.BasicAuth(*auth) if auth else None)

    def _transport(self, request_der: bytes) -> bytes:
        headers = {
            "Content-Type": "application/timestamp-query",
            "Accept": "application/timestamp-reply",
        }
        try:
            response = self._client.post(self.url, content=request_der, headers=headers)
        except httpx.TransportError as exc:  # connect errors, timeouts, protocol errors
            raise TimestampUnavailable(f"TSA {self.url} unreachable: {exc!r}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TimestampUnavailable(f"TSA {self.url} answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise TimestampError(
                f"TSA {self.url} answered HTTP {response.status_code}", reason="http-status"
            )
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/timestamp-reply":
            raise TimestampError(
                f"TSA {self.url} answered {content_type or 'no content type'}, "
                "not application/timestamp-reply",
                reason="bad-response",
            )
        return response.content

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTimeStamper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EmbeddedTimeStamper(TimeStamper):
    """The embedded default: the in-process :class:`EmbeddedTSA`, same DER as over HTTP."""

    def __init__(self, tsa: EmbeddedTSA) -> None:
        self.tsa = tsa

    def _transport(self, request_der: bytes) -> bytes:
        return self.tsa.respond(request_der)


def _digest(data: bytes, algorithm: str = "sha256") -> bytes:
    return hashlib.new(algorithm, data).digest()


def _fail(reason: str, message: str) -> TimestampError:
    return TimestampError(message, reason=reason)


def _parse_token(token_der: bytes) -> tuple[Any, Any, bytes]:
    """ContentInfo → (SignedData, the one SignerInfo, eContent bytes) (RFC 5652 §5.1-§5.3)."""
    info = cms.ContentInfo.load(bytes(token_der), strict=True)
    if info["content_type"].native != "signed_data":
        raise _fail("not-a-token", "token is not a CMS SignedData")
    signed_data = info["content"]
    encap = signed_data["encap_content_info"]
    content_type = encap["content_type"].native
    signer_infos = list(signed_data["signer_infos"])
    content = encap["content"]
    econtent = b"" if isinstance(content, core.Void) else bytes(content)
    if content_type != "tst_info":
        raise _fail("not-a-token", f"eContentType is {content_type}, not id-ct-TSTInfo")
    if len(signer_infos) != 1 or not econtent:
        raise _fail("not-a-token", "a TimeStampToken has eContent and exactly one signer")
    return signed_data, signer_infos[0], econtent


def _attribute(signed_attrs: Any, name: str) -> Any:
    values = [a["values"] for a in signed_attrs if a["type"].native == name]
    if len(values) != 1 or len(values[0]) != 1:
        return None
    return values[0][0]


def _find_signer(sid: Any, pool: Sequence[x509.Certificate]) -> x509.Certificate:
    """Match the SignerIdentifier by issuer+serial or subjectKeyIdentifier (RFC 5652 §5.3)."""
    for cert in pool:
        if sid.name == "issuer_and_serial_number":
            if (
                cert.serial_number == sid.chosen["serial_number"].native
                and cert.issuer.public_bytes() == sid.chosen["issuer"].dump()
            ):
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.chosen.native:
                return cert
    raise _fail("no-signer-cert", "the signer's certificate is neither in the token nor given")


def _verify_signature(signer: x509.Certificate, signer_info: Any, signed: bytes) -> None:
    """RSA PKCS#1 v1.5, RSA-PSS or ECDSA over the signed attributes (RFC 5652 §5.6)."""
    algo = signer_info["signature_algorithm"]
    try:
        sig_algo = algo.signature_algo
    except ValueError:
        raise _fail(
            "unsupported-algorithm", f"unknown signature {algo['algorithm'].dotted}"
        ) from None
    try:
        hash_name = algo.hash_algo  # PSS and sha*With* names carry their hash
    except ValueError:  # bare rsaEncryption: the SignerInfo digestAlgorithm applies
        hash_name = signer_info["digest_algorithm"]["algorithm"].native
    if hash_name not in SUPPORTED_HASHES:
        raise _fail("unsupported-algorithm", f"signature hash {hash_name} is not supported")
    chosen = SUPPORTED_HASHES[hash_name]
    signature = signer_info["signature"].native
    try:
        key = signer.public_key()
        if sig_algo == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(chosen))
        elif sig_algo == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), chosen)
        elif sig_algo == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = algo["parameters"]
            mgf_hash = SUPPORTED_HASHES[
                params["mask_gen_algorithm"]["parameters"]["algorithm"].native
            ]
            pss = padding.PSS(padding.MGF1(mgf_hash), params["salt_length"].native)
            key.verify(signature, signed, pss, chosen)
        else:
            raise _fail("unsupported-algorithm", f"signature algorithm {sig_algo} not supported")
    except InvalidSignature:
        raise _fail("bad-signature", "the token's signature does not verify") from None
    except (KeyError, ValueError, UnsupportedAlgorithm) as exc:
        raise _fail("unsupported-algorithm", f"cannot verify signature: {exc}") from None


def _check_eku(signer: x509.Certificate) -> None:
    """RFC 3161 §2.3: one critical EKU extension whose only purpose is timeStamping."""
    try:
        eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise _fail("eku", "TSA certificate has no extended key usage") from None
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise _fail("eku", "TSA certificate EKU must be timeStamping only, marked critical")


def _check_signing_certificate(signed_attrs: Any, signer: x509.Certificate) -> None:
    """ESS signing-certificate(-v2) must name the signer (RFC 3161 §2.4.1, RFC 5816 §2.2.1)."""
    v2 = _attribute(signed_attrs, "signing_certificate_v2")
    v1 = _attribute(signed_attrs, "signing_certificate")
    if v2 is not None:
        cert_id = v2["certs"][0]
        hash_name = cert_id["hash_algorithm"]["algorithm"].native
    elif v1 is not None:
        cert_id, hash_name = v1["certs"][0], "sha1"
    else:
        raise _fail("signing-certificate", "no ESS signing-certificate attribute")
    if hash_name not in ("sha1", *SUPPORTED_HASHES):
        raise _fail("unsupported-algorithm", f"ESSCertID hash {hash_name} is not supported")
    if cert_id["cert_hash"].native != _digest(
        signer.public_bytes(serialization.Encoding.DER), hash_name
    ):
        raise _fail("signing-certificate", "ESS signing-certificate names another certificate")
    issuer_serial = cert_id["issuer_serial"]
    if issuer_serial.native is not None and (
        issuer_serial["serial_number"].native != signer.serial_number
        or all(
            n.chosen.untag().dump() != signer.issuer.public_bytes() for n in issuer_serial["issuer"]
        )
    ):
        raise _fail("signing-certificate", "ESS issuerSerial does not match the signer")


def _check_chain(
    signer: x509.Certificate,
    gen_time: dt.datetime,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
) -> None:
    """Walk issuers from the signer to a trust root, checking each link at genTime."""
    current = signer
    for _ in range(_MAX_CHAIN):
        if not current.not_valid_before_utc <= gen_time <= current.not_valid_after_utc:
            raise _fail("cert-validity", f"{current.subject.rfc4514_string()} invalid at genTime")
        if current in roots:  # Certificate equality is DER equality
            return
        issuer = next((c for c in pool if c != current and issued_by(current, c)), None)
        if issuer is None:
            break
        try:
            constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise _fail("untrusted-chain", f"{issuer.subject.rfc4514_string()} is not a CA")
        current = issuer
    raise _fail("untrusted-chain", "the TSA certificate does not chain to a trusted root")


def verify_timestamp_token(
    token_der: bytes,
    data: bytes,
    *,
    trust_roots: Sequence[x509.Certificate],
    extra_certificates: Sequence[x509.Certificate] = (),
) -> TimestampInfo:
    """Verify a TimeStampToken over ``data`` offline (RFC 3161 §2.4.2, RFC 5652 §5.6).

    Checks, in order: structure, message-digest attribute, signature, the signer's EKU, the ESS
    signing-certificate, the imprint against ``data``, and the chain to ``trust_roots`` at
    genTime. Raises :class:`TimestampError` whose ``reason`` names the first failed check.
    Not checked: revocation (the bundle carries no CRL/OCSP yet) and path-length constraints.
    """
    try:
        return _verify(token_der, data, trust_roots, [*extra_certificates])
    except _MALFORMED + _BAD_X509 as exc:
        raise _fail("not-a-token", f"malformed token ({type(exc).__name__}: {exc})") from None


def _verify(
    token_der: bytes, data: bytes, roots: Sequence[x509.Certificate], extra: list[x509.Certificate]
) -> TimestampInfo:
    signed_data, signer_info, econtent = _parse_token(token_der)
    signed_attrs = signer_info["signed_attrs"]
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    content_type = _attribute(signed_attrs, "content_type")
    message_digest = _attribute(signed_attrs, "message_digest")
    if content_type is None or content_type.native != "tst_info" or message_digest is None:
        raise _fail("bad-attributes", "content-type and message-digest attributes are required")
    if digest_name not in SUPPORTED_HASHES:
        raise _fail("unsupported-algorithm", f"digest algorithm {digest_name} is not supported")
    if message_digest.native != _digest(econtent, digest_name):
        raise _fail("digest-mismatch", "the TSTInfo does not match its message-digest attribute")

    certs = signed_data["certificates"] or []
    pool = [
        x509.load_der_x509_certificate(c.chosen.dump()) for c in certs if c.name == "certificate"
    ]
    pool += extra
    signer = _find_signer(signer_info["sid"], pool)
    _verify_signature(signer, signer_info, b"\x31" + signed_attrs.dump()[1:])
    _check_eku(signer)
    _check_signing_certificate(signed_attrs, signer)

    tst = tsp.TSTInfo.load(econtent, strict=True)
    native = tst.native
    imprint_alg = native["message_imprint"]["hash_algorithm"]["algorithm"]
    if native["version"] != "v1":
        raise _fail("not-a-token", f"TSTInfo version {native['version']} is not v1")
    if imprint_alg not in SUPPORTED_HASHES:
        raise _fail("unsupported-algorithm", f"imprint algorithm {imprint_alg} is not supported")
    hashed = native["message_imprint"]["hashed_message"]
    if hashed != _digest(data, imprint_alg):
        raise _fail("imprint-mismatch", "the token timestamps other data")
    gen_time: dt.datetime = native["gen_time"].astimezone(dt.UTC)
    _check_chain(signer, gen_time, [*pool, *roots], roots)
    return TimestampInfo(
        gen_time=gen_time,
        serial_number=native["serial_number"],
        policy_oid=tst["policy"].dotted,
        hash_algorithm=imprint_alg,
        message_digest=hashed,
        tsa_certificate=signer,
        nonce=native["nonce"],
    )
