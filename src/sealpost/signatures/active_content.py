"""Active content in a PDF to be signed: what could make a viewer show, run or send something
other than the signed pages.

A PAdES signature (ETSI EN 319 142-1) covers bytes, not behaviour.  A document whose catalog
runs JavaScript when it opens, whose page launches a program, or whose form field reformats
its own value (ISO 32000-1 §12.6 actions, §12.6.3 trigger events, §12.7 interactive forms,
§12.10 XFA) can show the signer one thing and a later reader another, with every signature
still valid.  So intake looks for it, and the service refuses it unless the tenant allowed it
(``allow_active_content``); either way the evidence says what was found.

The check walks the object graph with pyHanko's reader (the one intake already opened: no
second parser) from the catalog forward, the way a viewer finds what it runs: the pages and
their annotations, the catalog's /OpenAction, /AA and name trees, the form's fields, the
bookmarks, file attachments.  It never decodes content streams, and it is bounded: at most
:data:`MAX_OBJECTS` objects and :data:`MAX_SECONDS` seconds; a document it cannot finish is a
finding of its own (``too_complex``), refused like the rest.

Refused, wherever they are (an automatic trigger or a click):

===========================  ===================================================================
kind                         what
===========================  ===================================================================
``javascript``               the JavaScript name tree; JavaScript actions; any action with /JS
``launch``                   /Launch: opens a program or a file of the computer
``external_document``        /GoToR, /GoToE: opens another PDF (a file, or one embedded)
``import_data``              /ImportData: fills form fields from another file
``submit_form``              /SubmitForm: sends form data to an address
``changes_display``          /SetOCGState, /Hide, /ResetForm: switches layers, hides or shows
                             annotations, clears fields
``media``                    /Rendition, /Movie, /Sound actions; Screen, Movie, Sound annotations
``rich_media``               /RichMediaExecute, /GoTo3DView; RichMedia and 3D annotations
``xfa``                      an XFA form (its own layout and scripts replace the pages)
``executable_attachment``    an attached file that is a program (by name, type or first bytes)
``web_address``              /URI as an automatic action (on open, on a page, on a pointer
                             event); a link the reader *clicks* is allowed
``too_complex``              the check stopped at its bound before the end
===========================  ===================================================================

Allowed: /GoTo, /GoToDp, /Named, /Thread, /Trans actions, clickable web links, and attachments
that are not programs (a Factur-X invoice's XML, a spreadsheet).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyhanko.pdf_utils import generic

from sealpost.errors import InvalidInput

MAX_OBJECTS = 25_000
"""Objects (indirect objects, direct dictionaries and arrays) the check visits at most: far
more than the pages, annotations, fields and bookmarks of a real document (a 1,000-page
document with a link and a bookmark per page is about 8,000: 0.6 s), few enough to stay
within seconds: pyHanko parses an object in 0.1 to 0.3 ms."""

MAX_SECONDS = 5.0
"""Wall-clock bound of the check, whatever the objects cost to parse (a busy server may reach
it before :data:`MAX_OBJECTS`; the finding is the same)."""

MAX_LISTED = 10
"""Findings named in a refusal's message; the rest are counted (``findings`` has them all)."""

MAX_FINDINGS = 50
"""Findings kept word for word; beyond, one more per kind says how many places were left out
(a form with ten thousand scripted fields must not make a ten-megabyte evidence record)."""

KINDS = (
    "javascript",
    "launch",
    "external_document",
    "import_data",
    "submit_form",
    "changes_display",
    "media",
    "rich_media",
    "xfa",
    "executable_attachment",
    "web_address",
    "too_complex",
)


@dataclass(frozen=True)
class Finding:
    """One piece of active content, as the refusal, the evidence and the audit trail name it."""

    kind: str
    """One of :data:`KINDS`: what a client switches on."""
    text: str
    """Where it is and what it does, in words, e.g. "page 2 opens a program or a file when
    the page is opened"."""

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text}


class ActiveContentRefused(InvalidInput):
    """A document holds active content and the tenant does not allow it (the default)."""

    code = "active_content"
    title = "The document contains active content"
    problem_fields = ("document", "findings")

    def __init__(self, message: str, *, document: str, findings: Iterable[Finding]) -> None:
        super().__init__(message)
        self.document = document
        """The document's name, as sent."""
        self.findings = tuple(f.text for f in findings)
        """Every finding, in words."""


def refusal(label: str, name: str, findings: tuple[Finding, ...]) -> ActiveContentRefused:
    """The 422 for ``findings`` in the document called ``label`` in messages (``name`` as
    sent)."""
    listed = "; ".join(f.text for f in findings[:MAX_LISTED])
    more = len(findings) - MAX_LISTED
    if more > 0:
        listed += f"; and {more} more"
    return ActiveContentRefused(
        f"{label} contains active content, which could change what a reader sees after it is "
        f"signed: {listed}. Remove it (print the document to a new PDF, or save it without "
        "scripts, actions and attachments) and upload it again; a tenant that must sign such "
        "documents can allow them with PUT /v1/settings/signing "
        '{"allow_active_content": true}',
        document=name,
        findings=findings,
    )


# --- what is refused ---------------------------------------------------------------------------

_ACTIONS: dict[str, tuple[str, str]] = {
    "/JavaScript": ("javascript", "runs JavaScript"),
    "/Launch": ("launch", "opens a program or a file"),
    "/GoToR": ("external_document", "opens another PDF file"),
    "/GoToE": ("external_document", "opens another (embedded) PDF document"),
    "/ImportData": ("import_data", "fills its form from another file"),
    "/SubmitForm": ("submit_form", "sends form data to an address"),
    "/SetOCGState": ("changes_display", "switches layers of content on or off"),
    "/Hide": ("changes_display", "hides or shows annotations"),
    "/ResetForm": ("changes_display", "clears form fields"),
    "/Rendition": ("media", "plays media"),
    "/Movie": ("media", "plays a movie"),
    "/Sound": ("media", "plays a sound"),
    "/RichMediaExecute": ("rich_media", "runs embedded rich media"),
    "/GoTo3DView": ("rich_media", "drives a 3D model"),
}
"""Action types (ISO 32000-1 Table 198, ISO 32000-2 Table 201) refused wherever they are."""

_AUTOMATIC_ONLY: dict[str, tuple[str, str]] = {
    "/URI": ("web_address", "opens a web address"),
}
"""Refused only where nobody clicks: on open, on a page, on a pointer or focus event."""

_ANNOTATIONS: dict[str, tuple[str, str]] = {
    "/RichMedia": ("rich_media", "embedded rich media (Flash, video or 3D that runs its own code)"),
    "/3D": ("rich_media", "a 3D model, which can carry scripts"),
    "/Screen": ("media", "a media player (Screen annotation)"),
    "/Movie": ("media", "a movie (Movie annotation)"),
    "/Sound": ("media", "a sound (Sound annotation)"),
}

_TRIGGERS: dict[str, dict[str, str]] = {
    # ISO 32000-1 Table 197 (document), 195 (page), 194 (annotation), 196 (form field)
    "document": {
        "/WC": "before it is closed",
        "/WS": "before it is saved",
        "/DS": "after it is saved",
        "/WP": "before it is printed",
        "/DP": "after it is printed",
    },
    "page": {"/O": "when the page is opened", "/C": "when the page is closed"},
    "annotation": {
        "/E": "when the pointer enters it",
        "/X": "when the pointer leaves it",
        "/D": "when a mouse button is pressed on it",
        "/U": "when a mouse button is released on it",
        "/Fo": "when it gets the focus",
        "/Bl": "when it loses the focus",
        "/PO": "when its page is opened",
        "/PC": "when its page is closed",
        "/PV": "when its page becomes visible",
        "/PI": "when its page is no longer visible",
        "/K": "when a key is typed in it",
        "/F": "when its value is formatted for display",
        "/V": "when its value is validated",
        "/C": "when other fields change its value (calculation)",
    },
}

# fmt: off
_PROGRAM_EXTENSIONS = frozenset({
    "app", "apk", "appimage", "bash", "bat", "cmd", "com", "command", "cpl", "csh", "deb", "dll",
    "dmg", "exe", "hta", "inf", "jar", "js", "jse", "ksh", "lnk", "msc", "msi", "msix", "msp",
    "pif", "pl", "ps1", "psd1", "psm1", "py", "pyw", "rb", "reg", "rpm", "run", "scf", "scr",
    "sh", "so", "vb", "vbe", "vbs", "ws", "wsc", "wsf", "wsh",
})
# fmt: on
_PROGRAM_TYPES = frozenset(
    {
        "application/java-archive",
        "application/javascript",
        "application/vnd.microsoft.portable-executable",
        "application/x-dosexec",
        "application/x-elf",
        "application/x-executable",
        "application/x-mach-binary",
        "application/x-msdos-program",
        "application/x-msdownload",
        "application/x-msi",
        "application/x-sh",
        "application/x-shellscript",
        "text/javascript",
    }
)
_PROGRAM_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux or Unix program"),
    (b"\xfe\xed\xfa\xce", "a macOS program"),
    (b"\xfe\xed\xfa\xcf", "a macOS program"),
    (b"\xce\xfa\xed\xfe", "a macOS program"),
    (b"\xcf\xfa\xed\xfe", "a macOS program"),
    (b"\xca\xfe\xba\xbe", "a macOS or Java program"),
    (b"#!", "a script"),
)

_SKIPPED = frozenset(
    {
        # back-pointers and redundant links: what they lead to is reached forward
        "/Parent",
        "/P",
        "/Prev",
        "/Last",
        # what draws or describes, never what acts: content, resources, appearances,
        # structure, metadata, destinations, signature values
        "/Contents",
        "/Resources",
        "/AP",
        "/DR",
        "/StructTreeRoot",
        "/Metadata",
        "/Thumb",
        "/PieceInfo",
        "/Dests",
        "/Dest",
        "/PageLabels",
        "/OCProperties",
        "/V",
        "/Perms",
        "/Font",
        "/DSS",
        "/SE",
    }
)


# --- the walk ----------------------------------------------------------------------------------

_CONTAINERS = (generic.IndirectObject, generic.ArrayObject, generic.DictionaryObject)


@dataclass(frozen=True)
class _At:
    """Where the walk is: how a finding names the place, and how to read the next object."""

    where: str
    """What a finding there is about, e.g. "page 2", "a link on page 2"."""
    role: str = "any"
    """How to read the object: any, catalog, names (the catalog's name dictionary), js_tree,
    acroform, field, annotation, outline, action, additional (an /AA dictionary)."""
    owner: str = "document"
    """Whose triggers an /AA dictionary here holds: document, page or annotation."""
    when: str = ""
    """For an action: when it runs ("when it is opened", "when clicked")."""
    automatic: bool = False
    """For an action: it runs without a click."""


class _Stop(Exception):
    """The walk reached its bound."""


class _Walk:
    """A depth-first walk with its own stack (a chain of a million /Next is no recursion), each
    indirect object once in each context (a cycle ends), counted and timed."""

    def __init__(self, pages: dict[tuple[int, int], int], max_objects: int, seconds: float):
        self.pages = pages
        self.max_objects = max_objects
        self.deadline = time.monotonic() + seconds
        self.seen: set[tuple[int, int, _At]] = set()
        self.visited = 0
        self.findings: dict[tuple[str, str], Finding] = {}
        self.left_out: dict[str, set[str]] = {}
        self.stack: list[tuple[Any, _At]] = []

    def find(self, kind: str, text: str) -> None:
        if (kind, text) in self.findings:
            return
        if len(self.findings) < MAX_FINDINGS or kind == "too_complex":
            self.findings[(kind, text)] = Finding(kind, text)
        else:
            self.left_out.setdefault(kind, set()).add(text)

    def result(self) -> tuple[Finding, ...]:
        more = tuple(
            Finding(kind, f"{len(texts)} more of the kind {kind}")
            for kind, texts in self.left_out.items()
        )
        return tuple(self.findings.values()) + more

    def push(self, obj: Any, at: _At) -> None:
        if isinstance(obj, _CONTAINERS):
            self.stack.append((obj, at))

    def run(self) -> None:
        while self.stack:
            obj, at = self.stack.pop()
            self.visited += 1
            if self.visited > self.max_objects or (
                self.visited % 256 == 0 and time.monotonic() > self.deadline
            ):
                raise _Stop
            if isinstance(obj, generic.IndirectObject):
                # once per object *and* context: an action both clicked and run on opening is
                # read twice, and a web address is not let through because a link saw it first
                key = (obj.idnum, obj.generation, at)
                if key in self.seen:
                    continue
                self.seen.add(key)
                obj = obj.get_object()  # type: ignore[no-untyped-call]
                page = self.pages.get((key[0], key[1]))
                if page is not None:
                    at = _At(f"page {page}", owner="page")
            if isinstance(obj, generic.ArrayObject):
                for index in reversed(range(len(obj))):
                    self.push(obj.raw_get(index), at)
            elif isinstance(obj, generic.DictionaryObject):
                if at.role == "action":
                    self.action(obj, at)
                elif at.role == "additional":
                    self.additional(obj, at)
                elif at.role == "js_tree":
                    self.js_tree(obj, at)
                else:
                    self.dictionary(obj, self.describe(obj, at))

    def action(self, node: generic.DictionaryObject, at: _At) -> None:
        """An action (ISO 32000-1 §12.6.2) and the actions chained after it (/Next)."""
        kind = _name(node, "/S")
        refused = _ACTIONS.get(kind) or (_AUTOMATIC_ONLY.get(kind) if at.automatic else None)
        if refused is not None:
            self.find(refused[0], f"{at.where} {refused[1]} {at.when}")
        if kind != "/JavaScript" and "/JS" in node:
            self.find("javascript", f"{at.where} runs JavaScript {at.when}")
        if "/Next" in node:
            self.push(node.raw_get("/Next"), at)

    def additional(self, node: generic.DictionaryObject, at: _At) -> None:
        """An additional-actions dictionary (ISO 32000-1 §12.6.3): each entry an action run on
        its trigger, without a click."""
        triggers = _TRIGGERS[at.owner]
        for key in node:
            when = triggers.get(str(key), f"on its {str(key)[1:]} trigger")
            self.push(node.raw_get(key), _At(at.where, "action", when=when, automatic=True))

    def js_tree(self, node: generic.DictionaryObject, at: _At) -> None:
        """The document-level JavaScript name tree (ISO 32000-1 §7.7.4): run on opening."""
        names = _get(node, "/Names")
        if isinstance(names, generic.ArrayObject) and len(names) >= 2:
            self.find(
                "javascript",
                "JavaScript in the document name tree (it runs when the document is opened)",
            )
        if "/Kids" in node:
            self.push(node.raw_get("/Kids"), at)

    def describe(self, node: generic.DictionaryObject, at: _At) -> _At:
        """``at`` for an annotation, a form field or a bookmark: named after what it is."""
        title = _text(node, "/T")
        if at.role == "annotation":
            on = f" on {at.where}" if at.where.startswith("page ") else ""
            subtype = _name(node, "/Subtype")
            media = _ANNOTATIONS.get(subtype)
            if media is not None:
                self.find(media[0], f"{at.where} has {media[1]}")
            if subtype == "/Link":
                return _At(f"a link{on}", owner="annotation")
            if subtype == "/Widget" or "/FT" in node:
                field = f"the form field “{title}”" if title else "a form field"
                return _At(f"{field}{on}", "field", owner="annotation")
            return _At(f"an annotation ({subtype[1:] or 'of no type'}){on}", owner="annotation")
        if at.role == "field":
            field = f"the form field “{title}”" if title else "a form field"
            return _At(field, "field", owner="annotation")
        if at.role == "outline" and "/Title" in node:
            return _At(f"the bookmark “{_text(node, '/Title')}”", "outline")
        return at

    def dictionary(self, node: generic.DictionaryObject, at: _At) -> None:
        """Any other dictionary: check it, follow its forward links."""
        if "/EF" in node:
            self.attachment(node, at)
        for key in node:
            name = str(key)
            if name in _SKIPPED:
                continue
            value = node.raw_get(key)
            if name == "/A":
                self.push(value, _At(at.where, "action", when="when clicked"))
            elif name == "/OpenAction":
                if isinstance(value.get_object(), generic.DictionaryObject):  # else a destination
                    when = "when it is opened"
                    self.push(value, _At(at.where, "action", when=when, automatic=True))
            elif name == "/AA":
                self.push(value, _At(at.where, "additional", owner=at.owner))
            elif at.role == "catalog" and name in ("/Names", "/AcroForm", "/Outlines"):
                role = {"/Names": "names", "/AcroForm": "acroform", "/Outlines": "outline"}[name]
                self.push(value, _At(at.where, role))
            elif at.role == "names" and name == "/JavaScript":
                self.push(value, _At("the document", "js_tree"))
            elif at.role == "acroform" and name == "/XFA":
                self.find("xfa", "an XFA form: its own layout and scripts replace the pages")
            elif at.role == "acroform" and name == "/Fields":
                self.push(value, _At("the document", "field"))
            elif name == "/Annots":
                self.push(value, _At(at.where, "annotation"))
            elif at.role in ("field", "outline") and name in ("/Kids", "/First", "/Next"):
                self.push(value, _At(at.where, at.role))
            else:
                self.push(value, _At(at.where, owner=at.owner))

    def attachment(self, spec: generic.DictionaryObject, at: _At) -> None:
        """A file specification with an embedded file (ISO 32000-1 §7.11.4): refused when it is
        a program, by its name, its declared type (MIME) or its first bytes."""
        names = [_text(spec, key) for key in ("/UF", "/F", "/DOS", "/Unix", "/Mac")]
        why = ""
        for candidate in names:
            extension = candidate.rsplit(".", 1)[-1].lower() if "." in candidate else ""
            if extension in _PROGRAM_EXTENSIONS:
                why = f"its name ends in .{extension}"
                break
        files = _get(spec, "/EF")
        keys = list(files)[:5] if isinstance(files, generic.DictionaryObject) else []
        for key in keys:
            stream = files.raw_get(key).get_object()
            if why or not isinstance(stream, generic.StreamObject):
                continue
            declared = _name(stream, "/Subtype")[1:].lower()
            head = _head(stream)
            what = next((w for magic, w in _PROGRAM_MAGIC if head.startswith(magic)), None)
            if declared in _PROGRAM_TYPES:
                why = f"its type is {declared}"
            elif what is not None:
                why = f"its content is {what}"
        if why:
            name = next((n for n in names if n), "")
            label = f"the attachment “{name}”" if name else "an attachment"
            where = f" ({at.where})" if at.where != "the document" else ""
            self.find("executable_attachment", f"{label}{where} is a program: {why}")


def _get(node: generic.DictionaryObject, key: str) -> Any:
    try:
        return node[key]
    except KeyError:
        return None


def _name(node: generic.DictionaryObject, key: str) -> str:
    value = _get(node, key)
    return str(value) if isinstance(value, generic.NameObject) else ""


def _text(node: generic.DictionaryObject, key: str) -> str:
    """A string entry as text, shortened and without control characters (it is shown)."""
    value = _get(node, key)
    if isinstance(value, generic.TextStringObject | generic.ByteStringObject):
        raw = str(value) if isinstance(value, str) else bytes(value).decode("latin-1")
        text = "".join(c if c.isprintable() else " " for c in raw).strip()
        return text if len(text) <= 60 else text[:59] + "…"
    return ""


def _head(stream: generic.StreamObject, size: int = 8) -> bytes:
    """The first bytes of an embedded file, decoding at most that much: a file that inflates
    to gigabytes costs nothing here.  Only unfiltered and plain Flate streams are read."""
    filters = _get(stream, "/Filter")
    if isinstance(filters, generic.ArrayObject) and len(filters) == 1:
        filters = filters[0]
    raw = stream.encoded_data
    if filters is None:
        return raw[:size]
    if filters == "/FlateDecode" and "/DecodeParms" not in stream:
        try:
            return zlib.decompressobj().decompress(raw[:4096], size)
        except zlib.error:
            return b""
    return b""


def find_active_content(
    root: generic.DictionaryObject,
    root_ref: Any,
    pages: list[Any],
    *,
    max_objects: int = MAX_OBJECTS,
    seconds: float = MAX_SECONDS,
) -> tuple[Finding, ...]:
    """The active content of the document whose catalog is ``root`` (reference ``root_ref``)
    and whose pages, in order, are the indirect objects ``pages``.

    Pages are walked first, so that what is on a page is named after it.  Exceptions of the
    reader (a broken object) propagate: the caller refuses the document as damaged.
    """
    numbers = {(p.idnum, p.generation): n for n, p in enumerate(pages, start=1)}
    walk = _Walk(numbers, max_objects, seconds)
    catalog = root_ref if isinstance(root_ref, generic.IndirectObject) else root
    walk.push(catalog, _At("the document", "catalog"))
    for page in reversed(pages):
        walk.push(page, _At("the document"))
    try:
        walk.run()
    except _Stop:
        walk.find(
            "too_complex",
            f"the document is too complex to check for active content (the check stops after "
            f"{max_objects} objects or {seconds:g} seconds)",
        )
    return walk.result()
