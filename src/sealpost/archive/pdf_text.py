"""Read the text layer of one PDF, in a process of its own (run by ``extract.py`` as a script).

An attached PDF costs what its sender wants it to cost (a page that inflates to gigabytes, a
page tree of millions of objects): PDFium runs here, under the address-space and CPU-time
limits this script sets on itself before it loads PDFium (not in a ``preexec_fn``: the parent
is threaded, and Python code between fork and exec may deadlock there), and the parent kills
it when its wall-clock budget is spent.  Nothing of the server is imported.

    python -I pdf_text.py FILE MAX_PAGES MAX_CHARS MEMORY_MB CPU_SECONDS

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


def limit(memory_mb: int, cpu_seconds: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash writes no memory to disk
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    size = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, size))


def main() -> None:
    path, max_pages, max_chars = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limit(int(sys.argv[4]), int(sys.argv[5]))
    try:
        result = read(path, max_pages, max_chars)
    except MemoryError:
        result = {"error": "it needs more memory than a PDF may take"}
    except Exception as exc:  # whatever PDFium or the binding raise: name it, never crash
        result = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
