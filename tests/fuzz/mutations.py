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


# -- bytes ---------------------------------------------------------------------------------

_BYTE_OPS = (
    "flip",
    "byte",
    "insert",
    "token",
    "delete",
    "repeat",
    "truncate",
    "splice",
    "line_endings",
)


def _mutate(
    draw: st.DrawFn,
    data: bytearray,
    seeds: Sequence[bytes],
    tokens: Sequence[bytes],
    max_size: int,
) -> bytearray:
    """One havoc step on ``data`` (in place when possible); the result fits ``max_size``."""
    op = draw(st.sampled_from(_BYTE_OPS))
    pos = draw(st.integers(0, len(data)))
    if op == "flip" and pos < len(data):
        data[pos] ^= 1 << draw(st.integers(0, 7))
    elif op == "byte" and pos < len(data):
        data[pos] = draw(st.integers(0, 255))
    elif op == "insert":
        data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
    elif op == "token":
        data[pos:pos] = draw(st.sampled_from((*tokens, *GENERIC_TOKENS)))
    elif op == "delete":
        del data[pos : pos + draw(st.integers(1, 256))]
    elif op == "repeat" and pos < len(data):
        piece = bytes(data[pos : pos + draw(st.integers(1, 64))])
        times = draw(st.integers(2, max(2, (max_size - len(data)) // len(piece))))
        data[pos:pos] = piece * (times - 1)
    elif op == "truncate":
        del data[pos:]
    elif op == "splice":
        other = draw(st.sampled_from(seeds))
        data[pos:] = other[draw(st.integers(0, len(other))) :]
    elif op == "line_endings":
        swapped = bytes(data).replace(b"\r\n", b"\n") if b"\r\n" in data else data
        if swapped is data:
            swapped = bytes(data).replace(b"\n", b"\r\n")
        data = bytearray(swapped)
    return data[:max_size]


@st.composite
def mutated(
    draw: st.DrawFn,
    seeds: Sequence[bytes],
    tokens: Sequence[bytes] = (),
    *,
    max_steps: int = 6,
    max_size: int = MAX_SIZE,
) -> bytes:
    """A seed with 0 to ``max_steps`` havoc steps (0: the genuine input must pass too)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, max_steps))):
        data = _mutate(draw, data, seeds, tokens, max_size)
    return bytes(data)


def hostile_bytes(seeds: Sequence[bytes], tokens: Sequence[bytes] = ()) -> st.SearchStrategy[bytes]:
    """Mutated seeds, mostly, and raw random bytes, for the parsers of untrusted input."""
    return st.one_of(
        mutated(seeds, tokens),
        st.binary(max_size=2048),
        st.lists(st.sampled_from((*tokens, *GENERIC_TOKENS)) | st.binary(max_size=16)).map(
            b"".join
        ),
    )


# -- JSON documents ------------------------------------------------------------------------

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

_NUMERIC_LINES = ("²", "١٢", "0012", "-1", "1" * 5000, "", " 12", "12 ", "NaN")
"""Replacements for a line of signed text: Unicode digits (``str.isdigit`` is true for some that
``int`` refuses), leading zeros, a number past Python's 4300-digit conversion limit."""

Path = tuple[str | int, ...]


def _paths(node: Any, prefix: Path = ()) -> Iterator[Path]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _get(node: Any, path: Path) -> Any:
    for step in path:
        node = node[step]
    return node


def _set(root: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _at(root: Any, path: Path) -> Any:
    """The node at ``path`` of ``root``, or a sentinel when ``root`` has no such node."""
    try:
        return _get(root, path)
    except (KeyError, IndexError, TypeError):
        return _MISSING


_MISSING = object()


def _mutate_text(draw: st.DrawFn, text: str) -> str:
    if "\n" in text and draw(st.booleans()):  # a line-structured text such as a checkpoint
        lines = text.split("\n")
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(st.sampled_from(_NUMERIC_LINES) | st.text(max_size=20))
        return "\n".join(lines)
    pos = draw(st.integers(0, len(text)))
    kind = draw(st.sampled_from(["insert", "replace", "delete", "truncate", "case"]))
    if kind == "insert":
        return text[:pos] + draw(st.text(min_size=1, max_size=8)) + text[pos:]
    if kind == "replace":
        return text[:pos] + draw(st.characters()) + text[pos + 1 :]
    if kind == "delete":
        return text[:pos] + text[pos + 1 :]
    if kind == "truncate":
        return text[:pos]
    return text[:pos] + text[pos:].swapcase()


def _b64_bytes(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) if text else None
    except ValueError:
        return None


_PEM_HEAD, _PEM_TAIL = "-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n"


def _pem_der(text: str) -> bytes | None:
    if not text.startswith(_PEM_HEAD):
        return None
    return _b64_bytes("".join(text.strip().splitlines()[1:-1]))


def _to_pem(der: bytes) -> str:
    body = base64.b64encode(der).decode()
    return _PEM_HEAD + "".join(body[i : i + 64] + "\n" for i in range(0, len(body), 64)) + _PEM_TAIL


def _mutate_node(draw: st.DrawFn, root: Any, path: Path, donors: Sequence[Any]) -> Any:
    node = _get(root, path)
    parent = _get(root, path[:-1]) if path else None
    ops = ["replace", "donor"]
    if isinstance(node, str):
        ops += ["text", "bytes"]
    if isinstance(node, int) and not isinstance(node, bool):
        ops += ["number"]
    if isinstance(node, list) and len(node) > 1:
        ops += ["reorder", "duplicate"]
    if isinstance(node, dict):
        ops += ["add_key"]
    if isinstance(parent, dict | list):
        ops += ["delete"]
    op = draw(st.sampled_from(ops))
    if op == "replace":
        return _set(root, path, draw(JSON_VALUES))
    if op == "donor":  # the same field from another genuine document: swapped proofs & co
        donor = _at(draw(st.sampled_from(donors)), path) if donors else _MISSING
        return _set(root, path, copy.deepcopy(donor)) if donor is not _MISSING else root
    if op == "text":
        return _set(root, path, _mutate_text(draw, node))
    if op == "bytes":  # the bytes inside base64 or a PEM certificate, re-encoded
        der = _pem_der(node)
        raw = der if der is not None else _b64_bytes(node)
        if raw is None:
            return _set(root, path, _mutate_text(draw, node))
        changed = bytes(_mutate(draw, bytearray(raw), [raw], (), MAX_SIZE))
        encoded = _to_pem(changed) if der is not None else base64.b64encode(changed).decode()
        return _set(root, path, encoded)
    if op == "number":
        return _set(
            root, path, draw(st.sampled_from([node + 1, node - 1, -node, 0, 2**64, True, 1.0]))
        )
    if op == "reorder":
        return _set(root, path, draw(st.permutations(node)))
    if op == "duplicate":
        node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
        return root
    if op == "add_key":
        node[draw(st.text(max_size=12))] = draw(JSON_VALUES)
        return root
    assert isinstance(parent, dict | list)
    del parent[path[-1]]  # "delete"
    return root


@st.composite
def mutated_json(
    draw: st.DrawFn, original: Any, donors: Sequence[Any] = (), *, max_steps: int = 3
) -> Any:
    """A deep copy of ``original`` with 1 to ``max_steps`` changes, each at a node chosen
    anywhere in the tree: replaced, deleted, taken from a donor document, a key added, a list
    re-ordered or extended, text edited (line by line for multi-line text), a number moved,
    or the bytes inside a base64 or PEM value damaged and re-encoded."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, max_steps))):
        path = draw(st.sampled_from(list(_paths(doc))))
        doc = _mutate_node(draw, doc, path, donors)
    return doc
