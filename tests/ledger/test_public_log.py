"""The public log over HTTP: checkpoint as a signed note, and hash tiles (c2sp.org/tlog-tiles).

The verifier here is written from RFC 9162 §2.1.1, c2sp.org/tlog-tiles and c2sp.org/signed-note
alone, with ``hashlib`` and ``cryptography``: it must not share a line with ``sealpost.ledger``,
or a bug there would be checked against itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient

from sealpost.api.app import create_app
from sealpost.app import Sealpost
from tests.support.records import submission

# -- an independent verifier -------------------------------------------------------------------


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _index_path(n: int) -> str:
    """tlog-tiles: 3-digit groups, ``x`` before all but the last (1234067 → x001/x234/067)."""
    text = f"{n:03d}"
    text = "0" * (-len(text) % 3) + text
    groups = [text[i : i + 3] for i in range(0, len(text), 3)]
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def _fetch_tile(client: TestClient, level: int, n: int, width: int) -> list[bytes]:
    path = f"/log/tile/{level}/{_index_path(n)}" + ("" if width == 256 else f".p/{width}")
    response = client.get(path)
    assert response.status_code == 200, (path, response.text)
    assert response.headers["content-type"] == "application/octet-stream"
    want = "immutable" if width == 256 else "max-age=60"
    assert want in response.headers["cache-control"]
    assert len(response.content) == 32 * width
    return [response.content[i : i + 32] for i in range(0, len(response.content), 32)]


def _level_hashes(client: TestClient, level: int, size: int) -> list[bytes]:
    """Every hash of tile level ``level`` for a tree of ``size``: floor(size / 256**level)."""
    count = size // 256**level
    hashes: list[bytes] = []
    for n in range((count + 255) // 256):
        hashes += _fetch_tile(client, level, n, min(256, count - 256 * n))
    return hashes


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1, by the definition: k is the largest power of two smaller than n."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _h(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def _root_from_tiles(levels: list[list[bytes]], begin: int, end: int) -> bytes:
    """MTH(D[begin:end]) taking a whole subtree from a higher tile level where one covers it."""
    for level in range(len(levels) - 1, 0, -1):
        span = 256**level
        if end - begin == span and begin % span == 0 and begin // span < len(levels[level]):
            return levels[level][begin // span]
    if end - begin == 1:
        return levels[0][begin]
    k = 1
    while k * 2 < end - begin:
        k *= 2
    return _h(
        b"\x01"
        + _root_from_tiles(levels, begin, begin + k)
        + _root_from_tiles(levels, begin + k, end)
    )


def _open_note(note: str, vkey: str) -> str:
    """c2sp.org/signed-note: the text, once the Ed25519 line of ``vkey`` verifies over it."""
    name, key_id_hex, material = vkey.split("+", 2)  # base64 may hold a "+"
    raw = base64.b64decode(material)
    assert raw[0] == 0x01 and len(raw) == 33
    key_id = _h(name.encode() + b"\n" + b"\x01" + raw[1:])[:4]
    assert key_id.hex() == key_id_hex
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.rstrip("\n").split("\n"):
        assert line.startswith("\u2014 ")
        signer, _, blob_b64 = line[2:].partition(" ")
        blob = base64.b64decode(blob_b64)
        if signer == name and blob[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(blob[4:], text.encode())
            return text
    raise AssertionError("no signature by the log's key")


# -- the app -----------------------------------------------------------------------------------


@pytest.fixture
def client(sealpost: Sealpost) -> Iterator[TestClient]:
    with TestClient(create_app(sealpost, start_background=False)) as test_client:
        yield test_client


def _grow(sealpost: Sealpost, tenant_id: str, to_size: int) -> None:
    size = sealpost.log_storage.state().tree_size
    sealpost.log_storage.append([submission(tenant_id, n) for n in range(size, to_size)])
    assert sealpost.sequencer.seal_pending() is not None


def test_a_verifier_from_the_specs_alone_recomputes_every_root_from_the_public_tiles(
    sealpost: Sealpost, tenant_id: str, client: TestClient
) -> None:
    vkey = client.get("/log/verifier-key").text.strip()
    assert client.get("/log/checkpoint").status_code == 404  # no head yet
    for size in (1, 7, 255, 256, 257, 300, 512, 700, 1029):
        _grow(sealpost, tenant_id, size)
        response = client.get("/log/checkpoint")  # no API key: a public resource
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=2"
        origin, size_line, root_b64, *_ = _open_note(response.text, vkey).split("\n")
        assert origin == vkey.split("+")[0] == "test.sealpost.local/ledger"
        assert int(size_line) == size
        root = base64.b64decode(root_b64)

        levels = [_level_hashes(client, 0, size)]
        if size >= 256:
            levels.append(_level_hashes(client, 1, size))
            # a level-1 hash is the MTH of the full level-0 tile below it
            for n, hash_ in enumerate(levels[1]):
                assert hash_ == _mth(levels[0][256 * n : 256 * (n + 1)])
        assert _mth(levels[0]) == root, f"the level-0 tiles do not give the root of {size}"
        assert _root_from_tiles(levels, 0, size) == root


def test_a_record_holder_finds_its_leaf_hash_in_the_level_0_tiles(
    sealpost: Sealpost, tenant_id: str, client: TestClient
) -> None:
    record = submission(tenant_id, 1)
    sealpost.log_storage.append([submission(tenant_id, 0), record])
    sealpost.sequencer.seal_pending()
    bundle = sealpost.ledger.bundle(record.id, tenant_id)
    proof: dict[str, object] = bundle["inclusion_proof"]  # type: ignore[assignment]
    # RFC 8785 of this record (ASCII strings and integers only) is sorted, compact JSON
    canonical = json.dumps(bundle["record"], sort_keys=True, separators=(",", ":"))
    leaf = _fetch_tile(client, 0, 0, 2)[proof["leaf_index"]]  # type: ignore[index]
    assert leaf == _h(b"\x00" + canonical.encode()) == base64.b64decode(proof["leaf_hash"])  # type: ignore[arg-type]
    # and the entry bundles, which would be tenants' records, are not published
    entries = client.get("/log/tile/entries/000.p/2")
    assert entries.status_code == 404
    assert "not published" in entries.json()["detail"]


def test_the_checkpoint_note_verifies_with_the_published_key_and_is_the_sealed_text(
    sealpost: Sealpost, tenant_id: str, client: TestClient
) -> None:
    _grow(sealpost, tenant_id, 3)
    vkey = client.get("/log/verifier-key").text.strip()
    note = client.get("/log/checkpoint").text
    head = sealpost.ledger.head()
    assert head is not None
    # the note's text is exactly the checkpoint the X.509 seal signs: witnesses cosign it as is
    assert _open_note(note, vkey) == head.checkpoint.to_text()
    _name, _, material = vkey.split("+", 2)
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(material)[1:])
    blob = base64.b64decode(note.rstrip("\n").rpartition(" ")[2])
    forged = head.checkpoint.to_text().replace("\n3\n", "\n4\n")
    with pytest.raises(InvalidSignature):
        public.verify(blob[4:], forged.encode())


@pytest.mark.parametrize(
    "path",
    [
        "/log/tile/00/000",  # a leading zero on the level
        "/log/tile/64/000",  # past level 63
        "/log/tile/0/0",  # not three digits
        "/log/tile/0/0000",
        "/log/tile/0/x000/001",  # index 1 is 001
        "/log/tile/0/001/002",  # x missing before a group
        "/log/tile/0/000.p/0",
        "/log/tile/0/000.p/256",
        "/log/tile/0/000.p/01",
        "/log/tile/0/000.p/x",
        "/log/tile/0/\u0661\u0662\u0663",  # not ASCII digits
        "/log/tile/a/000",
        "/log/tile/0",
        "/log/tile/entries/000",
        # beyond a tree of 300: one full level-0 tile, 44 more leaves, one level-1 hash
        "/log/tile/0/001",
        "/log/tile/0/001.p/45",
        "/log/tile/1/000",
        "/log/tile/1/000.p/2",
        "/log/tile/2/000.p/1",
        "/log/tile/0/x001/000",
        "/log/tile/0/" + "x001/" * 1434 + "000",  # 4,305 digits: int() itself would refuse
        "/log/tile/0/" + "x001/" * 7 + "000",  # past any index of a uint64-sized tree
    ],
)
def test_bad_and_out_of_range_tile_paths_are_a_clear_404(
    sealpost: Sealpost, tenant_id: str, client: TestClient, path: str
) -> None:
    _grow(sealpost, tenant_id, 300)
    response = client.get(path)
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["type"] == "urn:sealpost:problem:tile_not_found"
    assert body["detail"]


def test_tiles_within_a_tree_of_300_are_served_full_or_partial(
    sealpost: Sealpost, tenant_id: str, client: TestClient
) -> None:
    _grow(sealpost, tenant_id, 300)
    full = _fetch_tile(client, 0, 0, 256)
    assert _fetch_tile(client, 0, 0, 10) == full[:10]  # any prefix of a full tile
    assert len(_fetch_tile(client, 0, 1, 44)) == 44
    assert _fetch_tile(client, 1, 0, 1) == [_mth(full)]
