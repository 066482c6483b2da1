"""The state's contract tests run against every backend in BACKENDS: a second backend of
the state's interface passes the same suite by adding its name here and its branch to
`new_database` (the white-box hooks in `tests/state/helpers.py` speak the SQL every backend
takes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.state import BlobStore, Store, is_postgres_url

BACKENDS = ["sqlite", "postgres"]


def new_database(backend: str, folder: Path, request: pytest.FixtureRequest) -> str:
    """Where a new, empty state of this backend lives (a file in `folder`, or a URL)."""
    if backend == "sqlite":
        return str(folder / "fleet.db")
    if backend == "postgres":
        return request.getfixturevalue("postgres").new_database()
    raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path) -> str:
    return new_database(request.param, tmp_path, request)


@pytest.fixture
def open_store(location, tmp_path):
    """Opens a store on the test's database: several make several processes sharing it."""
    opened = []

    def open_one() -> Store:
        store = Store(location)
        opened.append(store)
        if is_postgres_url(location):  # no folder beside it: the fleet records one
            store.set_files_root(tmp_path)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store()


@pytest.fixture
def blobs(store):
    return BlobStore(store)


@pytest.fixture
def digest(blobs):
    """A stored model blob that jobs can refer to."""
    return blobs.put(b"model bytes")
