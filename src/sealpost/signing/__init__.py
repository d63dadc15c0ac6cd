"""Electronic signature processes: documents, signers, identification, PAdES signatures, the
audit trail.  Depends on ledger, store, pki and certificates; the API and the signing page
depend on it."""
