"""The state's contract tests run against every backend in BACKENDS: a second backend of
the state's interface passes the same suite by adding its name here (and its branch to
`open_store` and to the white-box hooks in `tests/state/helpers.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.state import BlobStore, Store

BACKENDS = ["sqlite"]


def open_store(backend: str, folder: Path) -> Store:
    """A new, empty state of this backend, kept in `folder`."""
    if backend == "sqlite":
        return Store(folder / "fleet.db")
    raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    s = open_store(request.param, tmp_path)
    yield s
    s.close()


@pytest.fixture
def blobs(store):
    return BlobStore(store)


@pytest.fixture
def digest(blobs):
    """A stored model blob that jobs can refer to."""
    return blobs.put(b"model bytes")
