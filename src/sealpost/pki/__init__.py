"""Keys, certificates and the embedded RFC 3161 time-stamping authority.

The embedded default (``sealpost keys init``) makes a local CA and the seal, TSA and SMTP TLS
certificates; in production the operator loads their own PEM/PKCS#12 files instead. The ledger
depends on this package and on nothing else of Sealpost's.
"""
