"""The evidence ledger: records, the Merkle log, sealed tree heads, proofs and verification."""
