"""Structure-aware mutation strategies, example budgets and a hard time bound for fuzz tests.

Inputs start from real, valid samples (the *seeds*) and are damaged the way coverage fuzzers
damage them (AFL's "havoc" stage): bit flips, random bytes, insertions of the tokens a parser
cares about, deletions, a slice repeated many times (what finds super-linear parsing), line
endings swapped, truncation, and splicing two seeds together.  Hypothesis shrinks a failure to
the fewest, smallest steps, so a failing example reads as "seed N with these changes".

Budgets: each property states its examples for the default ``ci`` profile (``tests/conftest.py``);
the ``fuzz`` profile multiplies them (``settings.default.max_examples / 100``).
"""

from __future__ import annotations

import base64
import copy
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

MAX_SIZE = 64 * 1024
"""Largest mutated input: big enough for a 1,000-fold repetition of a token to show a
quadratic parser, small enough for hundreds of examples a minute on a 2-core machine."""

GENERIC_TOKENS: tuple[bytes, ...] = (
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    b"%",
    b"\\",
    b'"',
    b"[/x]",  # rich markup
    b"\x1b[31m",
)


def scaled(examples: int) -> int:
    """``examples`` for the ``ci`` profile, scaled up by a longer profile such as ``fuzz``."""
    return max(1, examples * settings.default.max_examples // 100)


def fuzz_settings(examples: int, *, deadline_ms: int) -> settings:
    """A property's budget: its example count and a per-example deadline (hypothesis checks it
    after each example; :func:`time_bound` is the hard stop for one that never returns)."""
    return settings(
        max_examples=scaled(examples),
        deadline=timedelta(milliseconds=deadline_ms),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class _Alarm(BaseException):
    """Raised by SIGALRM; a BaseException so that the code under test's ``except Exception``
    (which parsers of hostile input rightly have) cannot swallow it."""


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Fail (AssertionError, so hypothesis shrinks it) if the block runs ``seconds`` or more.

    SIGALRM interrupts pure Python and ``re`` alike; main thread only, which is where pytest
    runs tests.
    """

    def alarm(_signum: int, _frame: FrameType | None) -> None:
        raise _Alarm

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Alarm:
        raise AssertionError(f"hang: still running after {seconds} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- bytes: havoc programs -----------------------------------------------------------------


@dataclass(frozen=True)
class Havoc:
    """One byte-level step; ``pos`` is taken modulo the current length plus one, so a program
    applies to any input and an explicit example can be written by hand."""

    op: str
    pos: int = 0
    arg: Any = None


_POSITION = st.integers(0, 2**24)  # modulo the length: anywhere in a file of any size


def in_place_steps() -> st.SearchStrategy[Havoc]:
    """Bit flips and byte changes only: every offset stays right (a PDF's xref still points at
    its objects), so the damage reaches the checks instead of the file reader."""
    return st.one_of(
        st.builds(Havoc, st.just("flip"), _POSITION, st.integers(0, 7)),
        st.builds(Havoc, st.just("byte"), _POSITION, st.integers(0, 255)),
    )


def havoc_steps(tokens: Sequence[bytes] = (), seeds: int = 1) -> st.SearchStrategy[Havoc]:
    position = _POSITION
    return st.one_of(
        in_place_steps(),
        st.builds(Havoc, st.just("insert"), position, st.binary(min_size=1, max_size=32)),
        st.builds(Havoc, st.just("token"), position, st.sampled_from((*tokens, *GENERIC_TOKENS))),
        st.builds(Havoc, st.just("delete"), position, st.integers(1, 256)),
        st.builds(
            Havoc, st.just("repeat"), position, st.tuples(st.integers(1, 64), st.integers(2, 8192))
        ),
        st.builds(Havoc, st.just("truncate"), position),
        st.builds(
            Havoc,
            st.just("splice"),
            position,
            st.tuples(st.integers(0, seeds - 1), st.integers(0, MAX_SIZE)),
        ),
        st.builds(Havoc, st.just("line_endings")),
    )


def apply_havoc(
    data: bytes, steps: Sequence[Havoc], seeds: Sequence[bytes] = (), max_size: int = MAX_SIZE
) -> bytes:
    """``data`` after ``steps`` (AFL's havoc stage, made deterministic), cut to ``max_size``."""
    out = bytearray(data)
    for step in steps:
        pos = step.pos % (len(out) + 1)
        if step.op == "flip" and pos < len(out):
            out[pos] ^= 1 << step.arg
        elif step.op == "byte" and pos < len(out):
            out[pos] = step.arg
        elif step.op in ("insert", "token"):
            out[pos:pos] = step.arg
        elif step.op == "delete":
            del out[pos : pos + step.arg]
        elif step.op == "repeat" and pos < len(out):
            length, times = step.arg
            piece = bytes(out[pos : pos + length])
            times = min(times, max(1, (max_size - len(out)) // len(piece) + 1))
            out[pos:pos] = piece * (times - 1)
        elif step.op == "truncate":
            del out[pos:]
        elif step.op == "splice" and seeds:
            which, start = step.arg
            other = seeds[which % len(seeds)]
            out[pos:] = other[start % (len(other) + 1) :]
        elif step.op == "line_endings":
            text = bytes(out)
            swapped = text.replace(b"\r\n", b"\n")
            out = bytearray(swapped if swapped != text else text.replace(b"\n", b"\r\n"))
        del out[max_size:]
    return bytes(out)


def mutated(
    seeds: Sequence[bytes], tokens: Sequence[bytes] = (), *, max_steps: int = 6
) -> st.SearchStrategy[bytes]:
    """A seed after 0 to ``max_steps`` havoc steps (0: the genuine input must pass too)."""
    programs = st.tuples(
        st.integers(0, len(seeds) - 1),
        st.lists(havoc_steps(tokens, len(seeds)), max_size=max_steps),
    )
    return programs.map(lambda p: apply_havoc(seeds[p[0]], p[1], seeds))


def hostile_bytes(seeds: Sequence[bytes], tokens: Sequence[bytes] = ()) -> st.SearchStrategy[bytes]:
    """Mutated seeds, mostly, and raw random bytes, for the parsers of untrusted input."""
    return st.one_of(
        mutated(seeds, tokens),
        st.binary(max_size=2048),
        st.lists(st.sampled_from((*tokens, *GENERIC_TOKENS)) | st.binary(max_size=16)).map(
            b"".join
        ),
    )


# -- JSON documents: edit programs ---------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2**31, 2**53, 2**63, 10**30, 1.0, -0.0, float("nan")]),
    st.integers(),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

TEXT_LINES = ("²", "١٢", "0012", "-1", "1" * 5000, "", " 12", "12 ", "NaN", "\ud800")
"""Replacements for a line of signed text: Unicode digits (``str.isdigit`` is true for some that
``int`` refuses), leading zeros, a number past Python's 4300-digit conversion limit, a lone
surrogate (JSON's ``\\ud800`` escape gives one)."""

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Edit:
    """One change to a JSON document, at node ``at``: a path, or an index into every node's
    path in document order (taken modulo their number).  ``arg`` is what the change needs."""

    at: int | JsonPath
    op: str
    arg: Any = None


_TEXT_EDITS = st.one_of(
    st.tuples(st.just("line"), st.integers(0, 8), st.sampled_from(TEXT_LINES) | st.text()),
    st.tuples(st.just("insert"), st.integers(0, 4096), st.text(min_size=1, max_size=8)),
    st.tuples(st.just("replace"), st.integers(0, 4096), st.characters()),
    st.tuples(st.just("delete"), st.integers(0, 4096), st.integers(1, 8)),
    st.tuples(st.just("truncate"), st.integers(0, 4096), st.none()),
    st.tuples(st.just("case"), st.integers(0, 4096), st.none()),
)


def edits(max_steps: int = 3) -> st.SearchStrategy[list[Edit]]:
    """Programs of 1 to ``max_steps`` edits: a node replaced, deleted, taken from a donor
    document (swapped proofs and heads), a key added, a list re-ordered or extended, text edited
    (line by line for multi-line text), a number moved, or the bytes inside a base64 or PEM
    value damaged by havoc steps and re-encoded, or a node nested thousands of levels deep."""
    at = st.integers(0, 10_000)
    step = st.one_of(
        st.builds(Edit, at, st.just("replace"), JSON_VALUES),
        st.builds(Edit, at, st.just("delete")),
        st.builds(Edit, at, st.just("donor"), st.integers(0, 16)),
        st.builds(Edit, at, st.just("add_key"), st.tuples(st.text(max_size=12), JSON_VALUES)),
        st.builds(Edit, at, st.just("reorder"), st.lists(st.integers(), min_size=2, max_size=64)),
        st.builds(Edit, at, st.just("duplicate"), st.integers(0, 64)),
        st.builds(Edit, at, st.just("text"), _TEXT_EDITS),
        st.builds(
            Edit, at, st.just("number"), st.sampled_from(["inc", "dec", "neg", 0, 2**64, True, 1.0])
        ),
        st.builds(Edit, at, st.just("bytes"), st.lists(havoc_steps(), min_size=1, max_size=4)),
        st.builds(Edit, at, st.just("nest"), st.sampled_from([2, 100, 5_000, 100_000])),
    )
    return st.lists(step, min_size=1, max_size=max_steps)


def _paths(root: Any, max_depth: int = 32) -> list[JsonPath]:
    """Every node's path in document order, down to ``max_depth`` (iterative: a "nest" edit
    makes documents far deeper than Python's recursion limit)."""
    out: list[JsonPath] = []
    stack: list[tuple[JsonPath, Any]] = [((), root)]
    while stack:
        path, node = stack.pop()
        out.append(path)
        if len(path) >= max_depth:
            continue
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        stack.extend(((*path, k), v) for k, v in reversed(list(items)))
    return out


_MISSING = object()


def _get(node: Any, path: JsonPath) -> Any:
    """The node at ``path``, or ``_MISSING`` when there is none."""
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


def _edit_text(text: str, arg: tuple[str, int, Any]) -> str:
    kind, pos, value = arg
    if kind == "line":
        lines = text.split("\n")
        lines[pos % len(lines)] = value
        return "\n".join(lines)
    pos %= len(text) + 1
    if kind == "insert":
        return text[:pos] + value + text[pos:]
    if kind == "replace":
        return text[:pos] + value + text[pos + 1 :]
    if kind == "delete":
        return text[:pos] + text[pos + value :]
    if kind == "truncate":
        return text[:pos]
    return text[:pos] + text[pos:].swapcase()


_PEM_HEAD, _PEM_TAIL = "-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n"


def _b64_bytes(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) if text else None
    except ValueError:
        return None


def _edit_inner_bytes(text: str, steps: Sequence[Havoc]) -> str:
    """Havoc on the bytes a base64 string or a PEM certificate holds, encoded back the same way."""
    if text.startswith(_PEM_HEAD):
        der = _b64_bytes("".join(text.strip().splitlines()[1:-1]))
        if der is not None:
            body = base64.b64encode(apply_havoc(der, steps, [der])).decode()
            lines = "".join(body[i : i + 64] + "\n" for i in range(0, len(body), 64))
            return _PEM_HEAD + lines + _PEM_TAIL
    raw = _b64_bytes(text)
    if raw is None:  # not base64: damage the UTF-8 bytes of the text itself
        return apply_havoc(text.encode(), steps).decode("utf-8", "replace")
    return base64.b64encode(apply_havoc(raw, steps, [raw])).decode()


def _apply_edit(doc: Any, edit: Edit, donors: Sequence[Any]) -> Any:
    """``doc`` after ``edit``; an edit that does not fit its node changes nothing."""
    if isinstance(edit.at, tuple):
        path = edit.at
    else:
        every = _paths(doc)
        path = every[edit.at % len(every)]
    node = _get(doc, path)
    if node is _MISSING:
        return doc
    parent = _get(doc, path[:-1]) if path else None

    def put(value: Any) -> Any:
        if not path:
            return value
        parent[path[-1]] = value
        return doc

    op, arg = edit.op, edit.arg
    if op == "nest":  # ``arg`` levels of lists: deep nesting, the recursion attack
        deep: list[Any] = []
        for _ in range(arg):
            deep = [deep]
        return put(deep)
    if op == "replace":
        return put(copy.deepcopy(arg))
    if op == "delete" and isinstance(parent, dict | list):
        del parent[path[-1]]
    elif op == "donor" and donors:
        found = _get(donors[arg % len(donors)], path)
        if found is not _MISSING:
            return put(copy.deepcopy(found))
    elif op == "add_key" and isinstance(node, dict):
        node[arg[0]] = copy.deepcopy(arg[1])
    elif op == "reorder" and isinstance(node, list):
        keys = [arg[i % len(arg)] + i for i in range(len(node))]
        return put([v for _, v in sorted(zip(keys, node, strict=True), key=lambda kv: kv[0])])
    elif op == "duplicate" and isinstance(node, list) and node:
        node.append(copy.deepcopy(node[arg % len(node)]))
    elif op == "text" and isinstance(node, str):
        return put(_edit_text(node, arg))
    elif op == "number" and isinstance(node, int) and not isinstance(node, bool):
        shifts = {"inc": node + 1, "dec": node - 1, "neg": -node}
        return put(shifts[arg] if isinstance(arg, str) else arg)
    elif op == "bytes" and isinstance(node, str):
        return put(_edit_inner_bytes(node, arg))
    return doc


def apply_edits(original: Any, program: Sequence[Edit], donors: Sequence[Any] = ()) -> Any:
    """A deep copy of ``original`` changed by ``program``; ``original`` is left as it was."""
    doc = copy.deepcopy(original)
    last = [e for e in program if e.op == "nest"]  # after the others, which deep-copy nodes
    for edit in [*(e for e in program if e.op != "nest"), *last]:
        doc = _apply_edit(doc, edit, donors)
    return doc
