"""The Merkle tree as C2SP ``tlog-tiles`` hash tiles, read from stored nodes.

Tile ``<L>/<N>`` holds, for ``i`` in ``0..255``, the hash of the complete subtree of height
``8 L`` at index ``N * 256 + i``: ``MTH(D[(N*256+i) * 256**L : (N*256+i+1) * 256**L])``
(c2sp.org/tlog-tiles, "Merkle Tree").  Every complete node is stored by the sequencer (level 0
are the records' leaf hashes), so a tile is one read of up to 256 node rows: node
``(8 L, N * 256 + i)``.  A partial tile ``<N>.p/<W>`` is its first ``W`` (1..255) hashes.

Path encoding of ``N``: zero-padded 3-digit elements, all but the last prefixed with ``x``
(1234067 → ``x001/x234/067``).
"""

from __future__ import annotations

import re

from sealpost.errors import NotFound
from sealpost.ledger.merkle import HASH_SIZE
from sealpost.ledger.storage import LogStorage

TILE_WIDTH = 256
TILE_HEIGHT = 8
MAX_LEVEL = 63
MAX_INDEX_GROUPS = 7
"""Three-digit groups of a tile index: 21 digits hold any index of a uint64-sized tree."""

_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


class TileNotFound(NotFound):
    """A tile path that is malformed, or names a tile the tree does not hold (yet)."""

    code = "tile_not_found"
    title = "No such tile"


def encode_index(index: int) -> str:
    """``N`` as path elements: 1234067 → ``x001/x234/067``, 5 → ``005``."""
    if index < 0:
        raise ValueError("a tile index is not negative")
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if not index:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The path under ``<prefix>/`` of a tile: ``tile/<L>/<N>[.p/<W>]``."""
    partial = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{partial}"


def parse_tile_path(path: str) -> tuple[int, int, int]:
    """``<L>/<N>[.p/<W>]`` (the part after ``tile/``) → (level, index, width), strictly:
    no leading zeros on ``L`` and ``W``, 3-digit groups with ``x`` on all but the last."""
    parts = path.split("/")
    width = TILE_WIDTH
    if len(parts) >= 3 and parts[-2].endswith(".p"):
        if not _WIDTH.fullmatch(parts[-1]) or int(parts[-1]) >= TILE_WIDTH:
            raise TileNotFound(f"tile/{path}: a partial tile's width is 1 to 255")
        width = int(parts[-1])
        parts = [*parts[:-2], parts[-2][:-2]]
    if len(parts) < 2:
        raise TileNotFound(f"tile/{path}: expected tile/<L>/<N>[.p/<W>]")
    if parts[0] == "entries":
        raise TileNotFound(
            "entry bundles are not published: they are tenants' evidence records; the level-0 "
            "tiles hold their leaf hashes (docs/evidence-format.md)"
        )
    if not _LEVEL.fullmatch(parts[0]) or int(parts[0]) > MAX_LEVEL:
        raise TileNotFound(f"tile/{path}: the level is 0 to {MAX_LEVEL}, no leading zeros")
    groups = parts[1:]
    if len(groups) > MAX_INDEX_GROUPS:  # before int(): past 4300 digits it raises
        raise TileNotFound(f"tile/{path}: an index of at most {MAX_INDEX_GROUPS} groups")
    if not all(len(g) == 4 and g[0] == "x" and g[1:].isdigit() for g in groups[:-1]) or not (
        len(groups[-1]) == 3 and groups[-1].isdigit() and groups[-1].isascii()
    ):
        raise TileNotFound(f"tile/{path}: the index is 3-digit groups, x before all but the last")
    if not all(g[1:].isascii() for g in groups[:-1]):
        raise TileNotFound(f"tile/{path}: the index is ASCII digits")
    index = int("".join(g[-3:] for g in groups))
    if encode_index(index) != "/".join(groups):  # e.g. a leading x000 group
        raise TileNotFound(f"tile/{path}: not the canonical encoding of index {index}")
    return int(parts[0]), index, width


def tile_hashes_available(level: int, tree_size: int) -> int:
    """How many hashes level ``level`` of the tiles holds in a tree of ``tree_size`` leaves:
    ``floor(tree_size / 256**level)`` (the last tile holds the rest, mod 256)."""
    return tree_size >> (TILE_HEIGHT * level)


def read_tile(storage: LogStorage, level: int, index: int, width: int, tree_size: int) -> bytes:
    """The tile's bytes (``width`` hashes of 32 bytes) from the stored nodes of a tree of
    ``tree_size`` leaves; TileNotFound when the tree does not hold them all yet."""
    first = index * TILE_WIDTH
    available = tile_hashes_available(level, tree_size)
    if first + width > available:
        kind = "tile" if width == TILE_WIDTH else f"partial tile of width {width}"
        raise TileNotFound(
            f"{tile_path(level, index, width)}: the tree of size {tree_size} holds no such "
            f"{kind} (level {level} has {available} hashes)"
        )
    node_level = TILE_HEIGHT * level
    ids = [(node_level, first + i) for i in range(width)]
    found = storage.nodes(ids)
    if len(found) != width:  # the tree holds them: a store that lost nodes is a server error
        raise RuntimeError(f"ledger storage lacks {width - len(found)} nodes of tile {ids[0]}")
    data = b"".join(found[i] for i in ids)
    assert len(data) == width * HASH_SIZE
    return data
