"""Coverage-guided fuzzing (atheris, libFuzzer) of MIME description and DSN parsing.

Not part of the test suite (atheris is not a dependency); the hypothesis properties in
``tests/fuzz`` are.  This finds what they miss by following coverage of the parsers, the
standard library's ``email`` package included.  From the repository root::

    .venv/bin/pip install atheris
    .venv/bin/python bench/fuzz/mime_dsn.py -max_total_time=300 -timeout=10 \
        -artifact_prefix=/tmp/sealpost-fuzz/ /tmp/sealpost-fuzz/corpus

The corpus directory is seeded with the messages and DSNs of ``tests/fuzz/samples.py`` when it
is empty.  A finding is an uncaught exception, an input whose facts no evidence record can
hold, or an input slower than ``-timeout`` seconds; libFuzzer writes it to ``crash-*`` or
``timeout-*`` under the artifact prefix, and giving that file instead of the corpus replays it.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parents[2]))  # tests.fuzz.samples, from a checkout

with atheris.instrument_imports():
    import email._header_value_parser
    import email.feedparser
    import email.headerregistry
    import email.utils

    from sealpost.communications.email.dsn import parse_dsn
    from sealpost.communications.email.mime import describe_message
    from sealpost.ledger.records import ContentInfo, Party, Reason, Subject, new_record

assert email._header_value_parser and email.feedparser and email.headerregistry and email.utils


def one_input(data: bytes) -> None:
    facts = describe_message(data)
    assert facts.content.sha256 == hashlib.sha256(data).hexdigest()
    new_record(  # what submission writes; canonical() raises if a fact is not valid Unicode
        tenant_id="t",
        event="SubmissionAcceptance",
        subject=Subject("communication", "c"),
        sender=Party(facts.from_address or "<>", facts.from_display),
        content=ContentInfo(facts.content.sha256, facts.content.size, facts.content.parts),
        details={"message": {"subject": facts.subject, "mime_defects": list(facts.defects)}},
    ).canonical()
    report = parse_dsn(data)
    for status in report.recipients if report is not None else ():
        new_record(
            tenant_id="t",
            event="NonDelivery",
            subject=Subject("communication", "c"),
            recipient=Party(status.final_recipient),
            reasons=(Reason(f"dsn-{status.status}", status.diagnostic_code or "-"),),
            details={"dsn": {"reporting_mta": report.reporting_mta, "action": status.action}},
        ).canonical()


def _seed(corpus: Path) -> None:
    from tests.fuzz.samples import dsn_seeds, mime_seeds

    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for seed in [*mime_seeds(), *dsn_seeds()]:
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)  # noqa: S324 - a name


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        if not arg.startswith("-") and not Path(arg).is_file():
            _seed(Path(arg))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
