"""Read the text layer of one PDF, in a process of its own (run by ``extract.py`` as a script).

An attached PDF costs what its sender wants it to cost (a page that inflates to gigabytes, a
page tree of millions of objects): PDFium runs here, under the address-space and CPU-time
limits the parent sets before ``exec``, and the parent kills this process when its wall-clock
budget is spent.  Nothing of the server is imported (a fast start, nothing to corrupt).

    python -I pdf_text.py FILE MAX_PAGES MAX_CHARS

Prints one JSON object: ``{"text": ..., "pages": N, "read": N, "truncated": bool}`` or
``{"error": "..."}`` (a file PDFium refuses: damaged, encrypted).
"""

from __future__ import annotations

import json
import sys


def read(path: str, max_pages: int, max_chars: int) -> dict[str, object]:
    import pypdfium2 as pdfium  # type: ignore[import-untyped, unused-ignore]

    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        return {"error": f"PDFium cannot open it ({exc})"}
    try:
        pages = len(document)
        chunks: list[str] = []
        size = 0
        read_pages = 0
        truncated = pages > max_pages
        for index in range(min(pages, max_pages)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_bounded()
                finally:
                    textpage.close()
            finally:
                page.close()
            read_pages += 1
            chunks.append(text)
            size += len(text)
            if size >= max_chars:
                truncated = truncated or size > max_chars or index + 1 < pages
                break
        return {
            "text": "\n".join(chunks)[:max_chars],
            "pages": pages,
            "read": read_pages,
            "truncated": truncated,
        }
    finally:
        document.close()


def main() -> None:
    path, max_pages, max_chars = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    try:
        result = read(path, max_pages, max_chars)
    except MemoryError:
        result = {"error": "it needs more memory than a PDF may take"}
    except Exception as exc:  # whatever PDFium or the binding raise: name it, never crash
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
