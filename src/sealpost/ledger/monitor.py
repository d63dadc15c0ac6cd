"""``sealpost ledger monitor``: follow a Sealpost log from another machine and catch a fork.

Each round fetches ``<log URL>/checkpoint``, opens it with the log's verifier key (Ed25519
signed note, c2sp.org/signed-note), fetches the hash tiles that tree needs (c2sp.org/tlog-tiles)
and recomputes from them, by itself (RFC 9162 §2.1.1):

* the new checkpoint's root: the tiles must match what the log signed;
* the root at the size of the last checkpoint it verified, *from the same tiles*: if it is that
  checkpoint's root, the old tree is a prefix of the new one (which is what an RFC 9162
  consistency proof shows); if not, the log signed two trees that cannot both be true.

It keeps the last verified checkpoint (the whole signed note) in a state file, written
atomically, so a restart picks up where it stopped, and a fork is shown with both signed notes:
the evidence to hand over.

::

    MonitorError
    ├── LogMisbehaved    exit 1: a fork, a shrinking tree, a bad signature, tiles that do not
    │                    match the checkpoint, a malformed checkpoint or tile
    └── LogUnreachable   exit 2 with --once (retried when polling): no answer, an HTTP error
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from sealpost.errors import SealpostError
from sealpost.ledger import merkle
from sealpost.ledger.note import NoteError, NoteVerifier
from sealpost.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, tile_hashes_available, tile_path
from sealpost.ledger.tree_head import Checkpoint


class MonitorError(Exception):
    """Base of the monitor's failures; ``exit_code`` is what the command exits with."""

    exit_code = 1


class LogMisbehaved(MonitorError):
    """The log showed something a correct log never does; ``notes``: the signed checkpoints
    that prove it (the last verified one and the new one, for a fork or a shrinking tree)."""

    exit_code = 1

    def __init__(self, message: str, notes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.notes = notes


class LogUnreachable(MonitorError):
    """The check could not be made this time (network, HTTP status, a missing tile)."""

    exit_code = 2


MAX_NOTE_BYTES = 64 * 1024
"""A checkpoint with a few dozen signatures is a few KiB (c2sp.org/signed-note: at least 16)."""
TILE_BYTES = TILE_WIDTH * merkle.HASH_SIZE

TileFetcher = Callable[[int, int, int], bytes]
"""(level, index, width) → exactly ``width`` * 32 bytes."""


def _describe(checkpoint: Checkpoint) -> str:
    root = base64.b64encode(checkpoint.root_hash).decode()
    return f"size {checkpoint.tree_size}, root {root}, signed at {checkpoint.time.isoformat()}"


class TreeFromTiles:
    """The tiles of one tree size, each fetched once, and the roots they give."""

    def __init__(self, tree_size: int, fetch: TileFetcher) -> None:
        self.tree_size = tree_size
        self.fetch = fetch
        self.tiles: dict[tuple[int, int], bytes] = {}

    def _hash_at(self, level: int, position: int) -> bytes:
        """Hash ``position`` of tile level ``level`` (node ``(8 level, position)``)."""
        index = position // TILE_WIDTH
        available = tile_hashes_available(level, self.tree_size)
        width = min(available - index * TILE_WIDTH, TILE_WIDTH)
        if width <= 0:
            raise ValueError(f"node ({level}, {position}) is not in a tree of {self.tree_size}")
        if (level, index) not in self.tiles:
            data = self.fetch(level, index, width)
            if len(data) != width * merkle.HASH_SIZE:
                raise LogMisbehaved(
                    f"{tile_path(level, index, width)} has {len(data)} bytes, expected "
                    f"{width * merkle.HASH_SIZE}"
                )
            self.tiles[level, index] = data
        offset = (position % TILE_WIDTH) * merkle.HASH_SIZE
        return self.tiles[level, index][offset : offset + merkle.HASH_SIZE]

    def node(self, level: int, index: int) -> bytes:
        """The complete subtree ``(level, index)`` from the tile level at or below it."""
        tile_level, height = divmod(level, TILE_HEIGHT)
        first = index << height
        hashes = [self._hash_at(tile_level, first + i) for i in range(1 << height)]
        while len(hashes) > 1:
            hashes = [
                merkle.node_hash(a, b) for a, b in zip(hashes[::2], hashes[1::2], strict=True)
            ]
        return hashes[0]

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves (``size`` at most the tree size)."""
        if size > self.tree_size:
            raise ValueError(f"size {size} is over the tree size {self.tree_size}")
        return merkle.fold([self.node(level, index) for level, index in merkle.decompose(0, size)])


@dataclass(frozen=True)
class Verified:
    """A checkpoint whose signature verified and whose root the tiles gave, with its note."""

    checkpoint: Checkpoint
    note: str


class LogClient:
    """HTTP GETs under the log's public prefix (e.g. ``https://host/log``)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the log URL must be http:// or https://, not {url!r}")
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def _get(self, path: str, limit: int) -> tuple[int, bytes]:
        """Status and body; a body over ``limit`` bytes is refused as it streams in (the log
        being checked must not be able to exhaust the monitor's memory)."""
        url = f"{self.url}/{path}"
        try:
            with self.http.stream("GET", url) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise LogMisbehaved(f"GET {url}: the answer is over {limit} bytes")
                return response.status_code, bytes(body)
        except httpx.HTTPError as exc:
            raise LogUnreachable(f"GET {url}: {exc!r}") from None

    def checkpoint_note(self) -> str:
        status, body = self._get("checkpoint", MAX_NOTE_BYTES)
        if status != 200:
            raise LogUnreachable(f"GET {self.url}/checkpoint answered {status}")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise LogMisbehaved("the checkpoint is not UTF-8") from None

    def tile(self, level: int, index: int, width: int) -> bytes:
        status, body = self._get(tile_path(level, index, width), TILE_BYTES)
        if status == 404 and width < TILE_WIDTH:
            # a log may drop a partial tile once the full one exists (c2sp.org/tlog-tiles)
            full_status, full = self._get(tile_path(level, index), TILE_BYTES)
            if full_status == 200:
                return full[: width * merkle.HASH_SIZE]
        if status != 200:
            raise LogUnreachable(
                f"GET {self.url}/{tile_path(level, index, width)} answered {status}"
            )
        return body

    def close(self) -> None:
        self.http.close()


def open_checkpoint(verifier: NoteVerifier, note: str) -> Checkpoint:
    """The checkpoint of a note signed by ``verifier`` for its own origin, or LogMisbehaved."""
    try:
        text = verifier.open(note)
        checkpoint = Checkpoint.parse(text)
    except (NoteError, SealpostError) as exc:
        raise LogMisbehaved(f"the checkpoint is refused: {exc}") from None
    if checkpoint.origin != verifier.name:
        raise LogMisbehaved(
            f"the checkpoint is of origin {checkpoint.origin!r}, the key of {verifier.name!r}"
        )
    return checkpoint


def check(
    previous: Verified | None, note: str, verifier: NoteVerifier, fetch: TileFetcher
) -> Verified:
    """Verify ``note`` and its tiles, and that it extends ``previous``; the new state."""
    new = open_checkpoint(verifier, note)
    if previous is not None and new.tree_size < previous.checkpoint.tree_size:
        raise LogMisbehaved(
            f"the tree shrank: checkpoint ({_describe(new)}) after checkpoint "
            f"({_describe(previous.checkpoint)})",
            (previous.note, note),
        )
    tree = TreeFromTiles(new.tree_size, fetch)
    if tree.root(new.tree_size) != new.root_hash:
        raise LogMisbehaved(f"the tiles do not give the root of checkpoint ({_describe(new)})")
    if previous is not None:
        old = previous.checkpoint
        if tree.root(old.tree_size) != old.root_hash:
            raise LogMisbehaved(
                f"fork: checkpoint ({_describe(new)}) does not extend checkpoint "
                f"({_describe(old)}); both are signed by {verifier.name}",
                (previous.note, note),
            )
    return Verified(new, note)


class StateUnusable(MonitorError):
    """The state file cannot be used: unreadable, locked by another monitor, or not
    writable.  Nothing was checked or the check cannot be remembered: exit 2."""

    exit_code = 2


@dataclass
class MonitorState:
    """The state file: which log, with which key, and the last verified checkpoint.

    One monitor per state file: a lock (``<state>.lock``, ``flock``) held while the monitor
    runs, so that two monitors sharing a file cannot overwrite each other's progress (nor move
    it back to a smaller checkpoint)."""

    path: Path
    _lock: int | None = None

    def lock(self) -> None:
        """Take the state file's lock; StateUnusable when another monitor holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateUnusable(
                f"another monitor is using the state file {self.path} (its lock is held)"
            ) from None
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing releases the flock
            self._lock = None

    def load(self, url: str, verifier: NoteVerifier) -> Verified | None:
        if not self.path.exists():
            return None
        try:
            saved = json.loads(self.path.read_text())
            saved_url, saved_vkey, note = saved["log"], saved["verifier_key"], saved["checkpoint"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StateUnusable(f"the state file {self.path} is unreadable: {exc!r}") from None
        if saved_vkey != verifier.vkey():
            raise MonitorError(
                f"the state file {self.path} follows the log of key {saved_vkey}, not "
                f"{verifier.vkey()}: use another state file"
            )
        if saved_url != url:
            raise MonitorError(f"the state file {self.path} follows {saved_url}, not {url}")
        return Verified(open_checkpoint(verifier, note), note)

    def save(self, url: str, verifier: NoteVerifier, verified: Verified) -> None:
        """Write to a temporary file then rename it: a crash leaves the old state or the new."""
        body = {"log": url, "verifier_key": verifier.vkey(), "checkpoint": verified.note}
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise StateUnusable(f"cannot save the state file {self.path}: {exc}") from None


class Monitor:
    """One log, one key, one state file; :meth:`round` checks the current checkpoint."""

    def __init__(self, url: str, verifier: NoteVerifier, state: MonitorState) -> None:
        self.client = LogClient(url)
        self.url = self.client.url
        self.verifier = verifier
        self.state = state
        state.lock()
        try:
            self.last = state.load(self.url, verifier)
        except MonitorError:
            state.unlock()
            self.client.close()
            raise

    def round(self) -> tuple[Verified | None, Verified]:
        """Check the log's current checkpoint against the last one; (previous, new)."""
        note = self.client.checkpoint_note()
        previous = self.last
        verified = check(previous, note, self.verifier, self.client.tile)
        self.state.save(self.url, self.verifier, verified)
        self.last = verified
        return previous, verified

    def close(self) -> None:
        self.client.close()
        self.state.unlock()
