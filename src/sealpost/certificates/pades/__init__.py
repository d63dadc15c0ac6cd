"""The PAdES toolkit (ETSI EN 319 142-1, ISO 32000-2 §12.8) shared by the certificate seal and
the signature processes, one concern per module:

- :mod:`.fields`: the signers' empty, locked signature fields, added before any signature;
- :mod:`.appearance`: what a signer's visible signature shows;
- :mod:`.evidence`: the signer's evidence digest, bound as a signed CMS attribute;
- :mod:`.signing`: a signer's signature (B-T, B-LT) and the final document timestamp (B-LTA);
- :mod:`.validation`: every signature and document timestamp of a PDF, checked offline;
- :mod:`.errors`: what pyHanko raises, as Sealpost errors (also used by
  :mod:`sealpost.certificates.seal`);
- :mod:`.pdf`: reading and incrementally updating an untrusted PDF.

Import from the module that holds the name; this package re-exports nothing, so that
:mod:`sealpost.certificates.seal` can use :mod:`.errors` without loading the rest.
"""
