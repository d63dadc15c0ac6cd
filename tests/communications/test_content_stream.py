"""``GET .../original.eml`` streams the stored bytes; a corrupted blob is a clear error before
the answer starts, never a cut-off 200 nor a complete copy of the wrong bytes."""

from __future__ import annotations

import hashlib

import pytest

from sealpost.app import Sealpost
from sealpost.errors import InvalidInput


def test_a_large_content_streams_back_whole_in_chunks(sealpost: Sealpost) -> None:
    data = b"x" * (sealpost.settings.content_inline_max_bytes + 300_000) + b"end"
    digest = sealpost.contents.put(data)
    size, chunks = sealpost.contents.stream(digest, chunk_size=64 * 1024)
    received = list(chunks)
    assert size == len(data) and b"".join(received) == data
    assert len(received) == -(-len(data) // (64 * 1024))  # chunk by chunk, never whole


def test_a_corrupted_blob_is_refused_before_the_first_chunk(sealpost: Sealpost) -> None:
    data = b"y" * (sealpost.settings.content_inline_max_bytes + 300_000)
    digest = sealpost.contents.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    (path,) = [p for p in sealpost.settings.data_dir.rglob(digest) if p.is_file()]
    path.chmod(0o644)
    path.write_bytes(b"z" + data[1:])
    with pytest.raises(InvalidInput, match="corrupted"):
        sealpost.contents.stream(digest, chunk_size=64 * 1024)
