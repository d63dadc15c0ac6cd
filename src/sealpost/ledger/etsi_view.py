"""The ETSI view of an evidence record: ETSI EN 319 522-3 ``EvidenceType`` as JSON.

A Sealpost record already holds the semantic content of ETSI EN 319 522-2 evidence
(clause 8.2); this module renders it in the shape of EN 319 522-3's ``EvidenceType``, with the
XML schema's element names in camelCase, for relying parties whose tools speak that format.
The view is a *pure function* of the sealed record's JSON and the seal certificate: nothing
comes from the database, the clock or the configuration, so anyone holding the record's
bundle rebuilds the same view and checks it against the sealed bytes (the ``leafHash`` in the
``urn:sealpost:extension:record`` extension is the bundle's leaf hash).  The view is not
signed by itself; the bundle is what proves it.  ``docs/evidence-format.md`` documents each
field; ``etsi_view.schema.json`` beside this module is its JSON Schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sealpost.ledger.canonical import canonical_json
from sealpost.ledger.events import ETSI_EVENT_BASE
from sealpost.ledger.merkle import leaf_hash

EN_319_522_3_VERSION = "1.1.1"
"""The edition of ETSI EN 319 522-3 whose ``EvidenceType`` this view follows."""

SHA256_ALGORITHM = "http://www.w3.org/2001/04/xmlenc#sha256"
"""XML Encryption's SHA-256 identifier, as ``DigestMethod/@Algorithm`` names it."""

EVIDENCE_POLICY = "urn:sealpost:evidence-policy:1"
"""The policy under which Sealpost issues evidence (``docs/evidence-format.md``)."""

REASON_BASE = "urn:sealpost:reason:"
EXTENSION_BASE = "urn:sealpost:extension:"
SCHEMA_PATH = Path(__file__).with_name("etsi_view.schema.json")

_WHOLE_CONTENT_TYPE = {"communication": "message/rfc822"}
"""The content type of the whole content, by subject type (else application/octet-stream)."""

_NAME_OIDS = {
    "2.5.4.3": "commonName",
    "2.5.4.10": "organizationName",
    "2.5.4.11": "organizationalUnitName",
    "2.5.4.6": "countryName",
    "2.5.4.97": "organizationIdentifier",
    "2.5.4.5": "serialNumber",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _reason_uri(code: str) -> str:
    return REASON_BASE + urllib.parse.quote(code, safe="-._~")


def _issuer(certificate: x509.Certificate | None) -> dict[str, Any]:
    if certificate is None:
        return {"identity": {"attribute": []}, "certificateDetails": []}
    attributes = [
        {
            "name": "urn:oid:" + a.oid.dotted_string,
            "friendlyName": _NAME_OIDS.get(a.oid.dotted_string, a.oid.dotted_string),
            "value": [a.value if isinstance(a.value, str) else a.value.hex()],
        }
        for a in certificate.subject
    ]
    return {
        "identity": {"attribute": attributes},
        "certificateDetails": [{"x509Certificate": _b64(certificate.public_bytes(Encoding.DER))}],
    }


def _party(party: Mapping[str, Any]) -> dict[str, Any]:
    attributes: list[dict[str, Any]] = [
        {
            "name": "urn:oid:0.9.2342.19200300.100.1.3",
            "friendlyName": "mail",
            "value": [party["address"]],
        }
    ]
    if isinstance(party.get("display_name"), str):
        attributes.append(
            {
                "name": "urn:oid:2.16.840.1.113730.3.1.241",
                "friendlyName": "displayName",
                "value": [party["display_name"]],
            }
        )
    address = str(party["address"])
    out: dict[str, Any] = {
        "identity": {"attribute": attributes},
        "identifier": {
            "value": address,
            "identifierSchemeName": "tel" if address.startswith("+") else "mailto",
        },
    }
    identification = party.get("identification")
    if isinstance(identification, Mapping):
        level = identification.get("assurance_level") or identification.get("level")
        if isinstance(level, str):
            out["identityAssuranceLevel"] = level
        method = identification.get("method")
        if isinstance(method, str):
            out["authenticationMethod"] = "urn:sealpost:identification:" + urllib.parse.quote(
                method, safe="-._~"
            )
    return out


def _content(record: Mapping[str, Any]) -> dict[str, Any] | None:
    content = record.get("content")
    app_id = record.get("application_identifier")
    if content is None and app_id is None:
        return None
    out: dict[str, Any] = {}
    if isinstance(app_id, str):
        out["appLayerIdentifier"] = app_id
    if isinstance(content, Mapping):
        parts = list(content.get("parts", []))
        whole_type = _WHOLE_CONTENT_TYPE.get(record["subject"]["type"], "application/octet-stream")
        infos = [
            {
                "identifier": "content",
                "contentType": whole_type,
                "digestMethod": {"algorithm": SHA256_ALGORITHM},
                "digestValue": _b64(bytes.fromhex(content["sha256"])),
            }
        ]
        for n, part in enumerate(parts, start=1):
            infos.append(
                {
                    "identifier": f"part-{n}",
                    "contentType": part["content_type"],
                    "digestMethod": {"algorithm": SHA256_ALGORITHM},
                    "digestValue": _b64(bytes.fromhex(part["sha256"])),
                }
            )
        out["composingParts"] = len(parts)
        out["partsInfo"] = infos
    return out


_V1_MEANING = {
    # catalogue 1's two names that are not the standard's ...
    "AcceptanceByRecipient": "ConsignmentAcceptance",
    "RejectionByRecipient": "ConsignmentRejection",
    # ... and its names for a plain mail server's 250 (the MX, a route; a smarthost), which
    # catalogue 2 calls what the standard calls them (docs/evidence-format.md)
    "ContentConsignment": "RelayToNonERDS",
    "RelayAcceptance": "RelayToNonERDS",
}
"""What a version-1 record's ETSI-URI event is in Table 2's words: the view names only the 22
events (EN 319 522-3 Table 2); the record keeps its sealed name, given in the extension."""


def _event_uri(record: Mapping[str, Any]) -> str:
    """The ``erdsEventId``: the record's own URI, or for a version-1 record under the ETSI URI,
    the Table 2 event it means (:data:`_V1_MEANING`)."""
    uri: str = record["event"]["uri"]
    name = record["event"]["name"]
    if record.get("version") == 1 and uri.startswith(ETSI_EVENT_BASE) and name in _V1_MEANING:
        return ETSI_EVENT_BASE + _V1_MEANING[name]
    return uri


def _extensions(record: Mapping[str, Any], canonical: bytes) -> list[dict[str, Any]]:
    event = record["event"]
    facts: dict[str, Any] = {
        "recordVersion": record["version"],
        "leafHash": _b64(leaf_hash(canonical)),
        "recordSha256": hashlib.sha256(canonical).hexdigest(),
        "tenant": record["tenant"],
        "subject": dict(record["subject"]),
        "eventName": event["name"],
        "eventUri": event["uri"],
        "eventGroup": event["group"],
    }
    if "code" in event:
        facts["eventCode"] = event["code"]
    out: list[dict[str, Any]] = [{"type": EXTENSION_BASE + "record", "value": facts}]
    content = record.get("content")
    if isinstance(content, Mapping):
        sizes: list[dict[str, Any]] = [{"identifier": "content", "size": content["size"]}]
        for n, part in enumerate(content.get("parts", []), start=1):
            entry: dict[str, Any] = {"identifier": f"part-{n}", "size": part["size"]}
            if "filename" in part:
                entry["fileName"] = part["filename"]
            sizes.append(entry)
        out.append({"type": EXTENSION_BASE + "parts", "value": sizes})
    identification = {
        role: record[role]["identification"]
        for role in ("sender", "recipient")
        if isinstance(record.get(role), Mapping) and "identification" in record[role]
    }
    if identification:
        out.append({"type": EXTENSION_BASE + "identification", "value": identification})
    if record.get("details"):
        out.append({"type": EXTENSION_BASE + "details", "value": record["details"]})
    return out


def etsi_view(
    record: Mapping[str, Any], seal_certificate: x509.Certificate | None
) -> dict[str, Any]:
    """The EvidenceType view of one record (its JSON form, as a bundle holds it).

    ``seal_certificate`` is the certificate that sealed the record's tree head (the bundle's
    first seal certificate); None leaves the issuer's certificate out.
    """
    canonical = canonical_json(dict(record))
    view: dict[str, Any] = {
        "version": EN_319_522_3_VERSION,
        "evidenceIdentifier": record["id"],
        "erdsEventId": _event_uri(record),
    }
    reasons = record.get("reasons") or []
    if reasons:
        view["eventReasons"] = {
            "eventReason": [
                {"code": _reason_uri(r["code"]), "details": [r["text"]]} for r in reasons
            ]
        }
    view["eventTime"] = record["event_time"]
    view["evidenceIssuerPolicyId"] = {"policyId": [EVIDENCE_POLICY]}
    view["evidenceIssuerDetails"] = _issuer(seal_certificate)
    if isinstance(record.get("sender"), Mapping):
        view["senderDetails"] = _party(record["sender"])
    if isinstance(record.get("recipient"), Mapping):
        view["recipientDetails"] = [_party(record["recipient"])]
    if "submission_time" in record:
        view["submissionTime"] = record["submission_time"]
    view["messageIdentifier"] = record["subject"]["id"]
    content = _content(record)
    if content is not None:
        view["userContentInfo"] = content
    view["extensions"] = _extensions(record, canonical)
    return view


def view_of_bundle(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """The view of a bundle's record, with the bundle's seal certificate as the issuer's."""
    chain = bundle.get("certificates", {}).get("seal") or []
    seal = x509.load_pem_x509_certificate(chain[0].encode()) if chain else None
    return etsi_view(bundle["record"], seal)


def schema() -> dict[str, Any]:
    """The JSON Schema the view follows (checked in beside this module)."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded
