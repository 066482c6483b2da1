"""Content-addressed model files in the fleet's blob folder: `<root>/<aa>/<sha256>` (by
default beside an SQLite database, `<db>.blobs`; see `Store.folder`).

A blob is written once under the sha256 of its bytes (atomically, so a crash never leaves a
half file under a digest) and then read in chunks by agents. A write that fails (a full
disk) leaves neither a temp file nor a blob that the database does not list.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from coordinator.output_files import Staged
from coordinator.state.errors import NotFound
from coordinator.state.store import Store

__all__ = ["BlobStore", "MAX_MODEL_BYTES", "DIGEST"]

MAX_MODEL_BYTES = 512 * 2**20
DIGEST = re.compile(r"[0-9a-f]{64}")  # sha256, lowercase hex


class BlobStore:
    def __init__(self, store: Store, max_bytes: int = MAX_MODEL_BYTES) -> None:
        self.store = store
        self.root = store.folder("blobs")
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes

    def path(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):
            raise ValueError(f"digest: expected 64 lowercase hex digits, got {digest[:80]!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes, expected_digest: str | None = None) -> str:
        """Store `data`; returns its sha256. With `expected_digest`, bytes that hash to
        something else are refused."""
        if len(data) > self.max_bytes:
            raise ValueError(
                f"model: {len(data)} bytes is over the limit of {self.max_bytes} "
                "bytes (--max-model-mb)"
            )
        if len(data) == 0:
            raise ValueError("model: empty")
        digest = hashlib.sha256(data).hexdigest()
        if expected_digest is not None and digest != expected_digest:
            raise ValueError(f"model: bytes hash to {digest}, not to the given {expected_digest}")
        path = self.path(digest)
        written = not path.exists()
        if written:
            path.parent.mkdir(exist_ok=True)
            with Staged(path, binary=True) as staged:  # whole or not at all
                staged.write(data)
        try:
            self.store.add_blob(digest, len(data))
        except BaseException:
            if written and self.store.blob_size(digest) is None:  # no row names it: an orphan
                path.unlink(missing_ok=True)
            raise
        return digest

    def read(self, digest: str, offset: int, limit: int) -> tuple[bytes, int]:
        """`limit` bytes from `offset`, and the blob's total size."""
        path = self.path(digest)  # a malformed digest is a bad argument, not a missing blob
        size = self.store.blob_size(digest)
        if size is None:
            raise NotFound(f"digest: no blob {digest}")
        if offset < 0 or offset > size:
            raise ValueError(f"offset: expected 0..{size}, got {offset}")
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(max(0, limit)), size
