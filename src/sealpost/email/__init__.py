"""Email: submission, delivery, bounces, DKIM, and the byte-level facts evidence is built on.

The pure modules (no database, no network but DNS through an injectable function):

* ``mime``      — :func:`~sealpost.email.mime.describe_message` (digests of the exact bytes and
  of each MIME part, never raises), header prepending, Message-IDs, API message building;
* ``dsn``       — RFC 3464 delivery status notifications;
* ``addresses`` — splitting, IDNA, VERP return paths, certify-domain rewriting;
* ``dkim``      — RFC 6376 signing and verification (dkimpy) with pluggable key lookups.

Their errors::

    SealpostError
    ├── InvalidInput (422)
    │   ├── addresses.AddressError    not an address, not a host name, not a UUID for VERP
    │   ├── mime.HeaderError          header name invalid, or CR/LF in a value (injection)
    │   └── dkim.DkimError            message or key that cannot be signed with
    └── ServiceUnavailable (503)
        └── dkim.KeyLookupFailed      DNS timeout looking up a key (RFC 6376 TEMPFAIL)

Nothing is re-exported here so that importing one module does not load the others (dkimpy,
aiosmtpd); import from the modules.
"""
