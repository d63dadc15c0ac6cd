"""The embedded RFC 3161 time-stamping authority.

pyHanko's ``DummyTimeStamper`` is RSA-only and meant for tests, so Sealpost answers
``TimeStampReq`` itself, with whatever key the operator configured, in DER that
``openssl ts -verify`` accepts. A token is a CMS SignedData (RFC 5652 §5) over a TSTInfo
(RFC 3161 §2.4.2) whose signed attributes carry ESS signing-certificate-v2 (RFC 5816 §2.2.1).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from sealpost.pki.errors import PkiError, TimestampRejected
from sealpost.pki.keys import SigningIdentity

#: Placeholder policy under a private-enterprise arc; operators with their own TSA policy
#: (ETSI EN 319 421) configure its OID instead.
DEFAULT_POLICY_OID = "1.3.6.1.4.1.61017.1.1"

#: Imprint (and CMS digest) algorithms accepted; MD5 and SHA-1 are refused (badAlg).
SUPPORTED_HASHES: Mapping[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}

_OIDS = {
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}
_NAMES = {oid: name for name, oid in _OIDS.items()}


class TimeStampResp(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 3161 §2.4.2 TimeStampResp with timeStampToken OPTIONAL.

    asn1crypto 1.5.1's ``TimeStampResp`` makes the token mandatory, so it can neither
    encode nor parse a rejection; use this class on both sides.
    """

    _fields = [  # noqa: RUF012 - asn1crypto's class-level spec
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Reject(Exception):
    """Internal: abort request processing with a PKIFailureInfo bit and a statusString."""

    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


@functools.lru_cache(maxsize=64)
def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    """Parsed once per certificate: asn1crypto then reuses its encoding instead of rebuilding it."""
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@functools.lru_cache(maxsize=64)
def _signing_certificate_v2_der(cert: x509.Certificate) -> bytes:
    """ESS signing-certificate-v2 with one ESSCertIDv2 (RFC 5816 §2.2.1, RFC 5035 §3).

    hashAlgorithm is left at its DEFAULT (SHA-256) so that the DER omits it.  Encoded once per
    certificate: asn1crypto rebuilding the issuer name for every token cost ~8 ms a token.
    """
    der = cert.public_bytes(serialization.Encoding.DER)
    parsed = asn1_x509.Certificate.load(der)
    issuer_serial = {
        "issuer": [asn1_x509.GeneralName(name="directory_name", value=parsed.issuer)],
        "serial_number": parsed.serial_number,
    }
    cert_id = {"cert_hash": hashlib.sha256(der).digest(), "issuer_serial": issuer_serial}
    return bytes(tsp.SigningCertificateV2({"certs": [cert_id]}).dump())


def _signing_certificate_v2(cert: x509.Certificate) -> Any:
    return tsp.SigningCertificateV2.load(_signing_certificate_v2_der(cert))


def sign_tst_info(
    identity: SigningIdentity, tst_info: tsp.TSTInfo, *, include_certificates: bool
) -> bytes:
    """Wrap ``tst_info`` in a TimeStampToken: ContentInfo/SignedData (RFC 3161 §2.4.2).

    Signed attributes are content-type, message-digest (RFC 5652 §11.1, §11.2) and ESS
    signing-certificate-v2; the signature covers their DER ``SET OF`` (RFC 5652 §5.4).
    Module-level so tests can build tokens from deliberately wrong identities.
    """
    econtent = tst_info.dump()
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(econtent).digest()]},
            {
                "type": "signing_certificate_v2",
                "values": [_signing_certificate_v2(identity.certificate)],
            },
        ]
    )
    to_sign = signed_attrs.dump()  # universal SET tag 0x31, children sorted (DER)
    if isinstance(identity.private_key, rsa.RSAPrivateKey):
        sig_alg = {"algorithm": "sha256_rsa", "parameters": core.Null()}
    else:
        sig_alg = {"algorithm": "sha256_ecdsa"}
    leaf = _asn1_cert(identity.certificate)
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": leaf.issuer, "serial_number": leaf.serial_number},
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": sig_alg,
            "signature": identity.sign(to_sign),
        }
    )
    certs = [leaf, *(_asn1_cert(c) for c in identity.chain)] if include_certificates else []
    signed_data: dict[str, Any] = {
        "version": "v3",  # eContentType is not id-data (RFC 5652 §5.1)
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {
            "content_type": "tst_info",
            "content": core.ParsableOctetString(econtent),
        },
        "signer_infos": [signer_info],
    }
    if certs:
        signed_data["certificates"] = certs
    token = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return bytes(token.dump())


def _rejection(fail_info: str, text: str) -> bytes:
    status = {"status": "rejection", "status_string": [text], "fail_info": {fail_info}}
    return bytes(TimeStampResp({"status": status}).dump())


def _failure(resp: TimeStampResp) -> TimestampRejected:
    """Turn a non-granted TimeStampResp into an error carrying its text and failInfo bits."""
    status = resp["status"]
    texts = status["status_string"].native or []
    fail = status["fail_info"].native or set()
    text = "; ".join(texts) or f"TSA answered {status['status'].native}"
    return TimestampRejected(text, fail_info=tuple(sorted(fail)))


class EmbeddedTSA:
    """Sealpost's own RFC 3161 responder; see :meth:`respond`."""

    def __init__(
        self,
        identity: SigningIdentity,
        *,
        policy_oid: str = DEFAULT_POLICY_OID,
        accuracy_ms: int = 1000,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        """``policy_oid`` defaults to a placeholder private-arc OID; configure your own.
        ``clock`` returns an aware datetime (a naive one is taken as UTC).

        The certificate must carry a critical EKU of timeStamping only (RFC 3161 §2.3),
        otherwise every token would fail verification: refuse it now.
        """
        try:
            eku = identity.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            eku = None
        if (
            eku is None
            or not eku.critical
            or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]
        ):
            raise PkiError(
                "TSA certificate needs a critical EKU of timeStamping only (RFC 3161 §2.3)"
            )
        if accuracy_ms < 0:
            raise PkiError("accuracy_ms must be >= 0")
        try:
            core.ObjectIdentifier(policy_oid).dump()
        except (ValueError, TypeError):
            raise PkiError(f"policy_oid {policy_oid!r} is not a dotted OID") from None
        self.identity = identity
        self.policy_oid = policy_oid
        self.accuracy_ms = accuracy_ms
        self._clock = clock

    def respond(self, request_der: bytes) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp (RFC 3161 §2.4.1, §2.4.2).

        Never raises for bad input: an unusable request gets ``rejection`` with a failInfo bit
        and a statusString.
        """
        try:
            req = self._parse(request_der)
            self._check(req)
        except _Reject as rej:
            return _rejection(rej.fail_info, rej.text)
        token = sign_tst_info(
            self.identity, self._tst_info(req), include_certificates=bool(req["cert_req"].native)
        )
        resp = TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
        )
        return bytes(resp.dump())

    def stamp_digest(
        self, digest: bytes, hash_algorithm: str = "sha256", nonce: int | None = None
    ) -> bytes:
        """Timestamp a precomputed digest in-process; returns the token (ContentInfo DER).

        ``hash_algorithm`` is a name (sha256/sha384/sha512) or a dotted OID. Goes through the
        same DER request/response path as an HTTP client; a rejection raises TimestampRejected.
        """
        oid = _OIDS.get(hash_algorithm, hash_algorithm)
        request: dict[str, Any] = {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": oid}, "hashed_message": digest},
            "cert_req": True,
        }
        if nonce is not None:
            request["nonce"] = nonce
        resp = TimeStampResp.load(self.respond(tsp.TimeStampReq(request).dump()))
        if resp["status"]["status"].native not in ("granted", "granted_with_mods"):
            raise _failure(resp)
        return bytes(resp["time_stamp_token"].dump())

    @staticmethod
    def _parse(request_der: bytes) -> Any:
        try:
            req = tsp.TimeStampReq.load(bytes(request_der), strict=True)
            _ = req.native  # asn1crypto parses lazily: force every field now
        except Exception as exc:  # any decoding failure is the client's
            raise _Reject("bad_data_format", f"malformed TimeStampReq: {exc}"[:200]) from None
        return req

    def _check(self, req: Any) -> None:
        """RFC 3161 §2.4.1 checks; the first failure decides the failInfo bit."""
        if req["version"].native != "v1":
            raise _Reject("bad_request", "unsupported TimeStampReq version")
        algorithm = req["message_imprint"]["hash_algorithm"]
        name = _NAMES.get(algorithm["algorithm"].dotted)
        if name is None:
            raise _Reject("bad_alg", f"unsupported hash algorithm {algorithm['algorithm'].dotted}")
        if algorithm["parameters"].native is not None:
            raise _Reject("bad_alg", "hash algorithm parameters must be absent or NULL")
        if (
            len(req["message_imprint"]["hashed_message"].native)
            != SUPPORTED_HASHES[name].digest_size
        ):
            raise _Reject("bad_data_format", f"digest length does not match {name}")
        policy = req["req_policy"]
        if policy.native is not None and policy.dotted != self.policy_oid:
            raise _Reject("unaccepted_policy", f"policy {policy.dotted} is not offered")
        if req["extensions"].native is not None:
            raise _Reject("unaccepted_extensions", "request extensions are not supported")

    def _tst_info(self, req: Any) -> tsp.TSTInfo:
        """TSTInfo v1 (RFC 3161 §2.4.2): imprint copied, genTime UTC with microseconds."""
        gen_time = self._clock()
        gen_time = (
            gen_time.replace(tzinfo=dt.UTC) if gen_time.tzinfo is None else gen_time
        ).astimezone(dt.UTC)
        leaf_subject = _asn1_cert(self.identity.certificate).subject
        info: dict[str, Any] = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": req["message_imprint"].copy(),
            # 128 random bits: unique across processes without coordination
            "serial_number": secrets.randbits(128) or 1,
            "gen_time": core.GeneralizedTime(gen_time),
            "tsa": asn1_x509.GeneralName(name="directory_name", value=leaf_subject),
        }
        if self.accuracy_ms:
            seconds, millis = divmod(self.accuracy_ms, 1000)
            accuracy: dict[str, int] = {}
            if seconds:
                accuracy["seconds"] = seconds
            if millis:
                accuracy["millis"] = millis
            info["accuracy"] = accuracy
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"].native
        return tsp.TSTInfo(info)


__all__ = [
    "DEFAULT_POLICY_OID",
    "SUPPORTED_HASHES",
    "EmbeddedTSA",
    "TimeStampResp",
    "sign_tst_info",
]
