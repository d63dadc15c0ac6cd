"""Reading a PDF's attached files: the catalog's EmbeddedFiles name tree (ISO 32000-1 §7.11.4).

Read from the latest revision, which is what a PDF reader shows: if someone swapped a file in
an incremental update, the verifier must check (and reject) that file, not the sealed one.
"""

from __future__ import annotations

from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

_MAX_DEPTH = 32  # a name tree deeper than this is hostile, not large


def _walk(node: Any, out: dict[str, bytes], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("the EmbeddedFiles name tree is too deep")
    node = node.get_object()
    names = node.get("/Names")
    if names is not None:
        items = list(names.get_object())
        for key, spec in zip(items[0::2], items[1::2], strict=False):
            stream = spec.get_object()["/EF"]["/F"].get_object()
            if not isinstance(stream, generic.StreamObject):
                raise ValueError(f"attachment {key} has no file stream")
            out[str(key)] = stream.data
    for kid in node.get("/Kids", ()):
        _walk(kid, out, depth + 1)


def read_embedded_files(reader: PdfFileReader) -> dict[str, bytes]:
    """Attachment name -> decoded bytes; empty when the PDF has none."""
    try:
        tree = reader.root["/Names"]["/EmbeddedFiles"]
    except KeyError:
        return {}
    out: dict[str, bytes] = {}
    _walk(tree, out, 0)
    return out
