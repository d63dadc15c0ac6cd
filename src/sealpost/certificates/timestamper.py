"""pyHanko's timestamp client, fed by Sealpost's own ``ledger.timestamps.TimeStamper``.

pyHanko asks for a token over a digest it computed (the signature value for a CAdES signature
timestamp, the document's byte ranges for a document timestamp, RFC 3161 §2.4.1), whereas
Sealpost's stamper hashes data itself.  Both speak the same DER ``TimeStampReq`` and
``TimeStampResp``, so this adapter lets pyHanko build the request and sends it through the
stamper's transport: the embedded TSA or the operator's HTTP TSA, with the same timeouts and
the same :class:`~sealpost.ledger.timestamps.TimestampUnavailable` on an outage.
"""

from __future__ import annotations

from asn1crypto import tsp
from pyhanko.sign.timestamps import TimeStamper as PyHankoTimeStamper

from sealpost.ledger.timestamps import TimeStamper, TimestampError
from sealpost.pki.tsa import TimeStampResp


class LedgerTimeStamper(PyHankoTimeStamper):
    """Adapts a Sealpost stamper to pyHanko; pyHanko checks the nonce and imprint itself."""

    def __init__(self, stamper: TimeStamper) -> None:
        super().__init__(include_nonce=True)  # type: ignore[no-untyped-call]
        self.stamper = stamper

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        reply = self.stamper._transport(req.dump())  # the transport seam: same DER both ways
        try:
            status = TimeStampResp.load(reply, strict=True)["status"]
            granted = status["status"].native in ("granted", "granted_with_mods")
        except Exception as exc:  # asn1crypto raises many types for bad DER
            raise TimestampError(
                f"TSA reply is not a TimeStampResp: {exc}", reason="bad-response"
            ) from None
        if not granted:
            texts = "; ".join(status["status_string"].native or []) or "no status text"
            fail = sorted(status["fail_info"].native or ())
            raise TimestampError(f"TSA refused ({fail}): {texts}", reason="rejected")
        return tsp.TimeStampResp.load(reply)
