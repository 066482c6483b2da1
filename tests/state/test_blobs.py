"""BlobStore on the state: content-addressed model files, indexed by the store."""

from __future__ import annotations

import hashlib

import pytest

from coordinator.state import BlobStore, NotFound
from tests.state.helpers import blob_count


def test_blob_put_is_content_addressed(store):
    blobs = BlobStore(store)
    data = b"\x00onnx?" * 100
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = store.folder("blobs") / digest[:2] / digest
    assert blobs.path(digest) == path and path.read_bytes() == data
    assert blobs.put(data, expected_digest=digest) == digest  # again: no-op
    assert store.blob_size(digest) == len(data)
    assert blob_count(store) == 1
    assert [p.name for p in path.parent.iterdir()] == [digest]  # no temp file left


def test_blob_put_refusals(store):
    blobs = BlobStore(store, max_bytes=10)
    with pytest.raises(ValueError, match="not to the given"):
        blobs.put(b"abc", expected_digest="0" * 64)
    with pytest.raises(ValueError, match="limit of 10 bytes"):
        blobs.put(b"x" * 11)
    with pytest.raises(ValueError, match="empty"):
        blobs.put(b"")
    assert blob_count(store) == 0
    assert list(blobs.root.rglob("*")) == []


def test_blob_read_in_chunks(store):
    blobs = BlobStore(store)
    data = bytes(range(256)) * 40 + b"tail"
    digest = blobs.put(data)
    chunks, offset = [], 0
    while offset < len(data):
        chunk, total = blobs.read(digest, offset, 1000)
        assert total == len(data) and 0 < len(chunk) <= 1000
        chunks.append(chunk)
        offset += len(chunk)
    assert b"".join(chunks) == data and len(chunks) == 11
    assert blobs.read(digest, len(data), 1000) == (b"", len(data))
    with pytest.raises(ValueError, match="^offset:"):
        blobs.read(digest, len(data) + 1, 10)


def test_blob_unknown_and_malformed_digests(store):
    blobs = BlobStore(store)
    with pytest.raises(NotFound, match="no blob"):
        blobs.read("ab" * 32, 0, 10)
    for bad in ("AB" * 32, "ab" * 31, "../../etc/passwd", ""):
        with pytest.raises(ValueError, match="^digest:"):
            blobs.path(bad)
        with pytest.raises(ValueError, match="^digest:"):
            blobs.read(bad, 0, 10)


def test_identifiers_with_a_trailing_newline_are_malformed(store):
    with pytest.raises(ValueError, match="^digest:"):
        BlobStore(store).path("ab" * 32 + "\n")
