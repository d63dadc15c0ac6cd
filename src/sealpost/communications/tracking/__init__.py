"""Optional open and click tracking of direct emails (``docs/tracking.md``): per tenant, off
by default; non-essential evidence, never proof of reading."""
