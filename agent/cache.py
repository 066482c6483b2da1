"""The agent's content-addressed model cache: files named by sha256, verified on arrival,
bounded in size, least recently used evicted first."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["DigestMismatch", "ModelCache"]

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class DigestMismatch(ValueError):
    """Bytes that do not hash to the digest they were fetched under."""


class ModelCache:
    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"cache_max_mb: expected > 0, got {max_bytes / 2**20:g}")
        self.folder = Path(folder) / "models"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        for leftover in self.folder.glob("*.part"):
            leftover.unlink(missing_ok=True)

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise ValueError(f"model_digest: expected 64 lowercase hex digits, got {digest!r}")
        return self.folder / digest

    def get(self, digest: str) -> Path | None:
        """The cached file for `digest` (marked as just used), or None."""
        path = self.path(digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def put(self, digest: str, data: bytes) -> Path:
        """Store `data` under `digest` after checking its sha256; evict to stay in bounds."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise DigestMismatch(f"model bytes hash to {actual}, expected {digest}")
        if len(data) > self.max_bytes:
            raise ValueError(
                f"model of {len(data)} bytes exceeds the cache bound of "
                f"{self.max_bytes} bytes (--cache-max-mb)"
            )
        path = self.path(digest)
        with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".part", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)  # atomic: a crash never leaves a half file under a digest
        self._evict(keep=path)
        return path

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._entries())

    def _entries(self) -> list[Path]:
        return [p for p in self.folder.iterdir() if _DIGEST.match(p.name)]

    def _evict(self, keep: Path) -> None:
        entries = sorted(self._entries(), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for path in entries:
            if total <= self.max_bytes:
                break
            if path != keep:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)
