"""Shared fixtures: paths to the OFA authors' assets and small helpers for real models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet import Fleet

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "ofa-assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    """The OFA authors' published files, kept beside the checkout: never copied into the repo."""
    if not (ASSETS / "PROVENANCE.md").is_file():
        pytest.fail(f"OFA assets not found at {ASSETS}; they are expected beside the checkout")
    return ASSETS


@pytest.fixture
def fleet(tmp_path) -> Fleet:
    """A coordinator serving on loopback with its own database, stopped after the test
    (modules that need another kind of fleet define their own)."""
    fleet = Fleet(tmp_path)
    fleet.start_server()
    yield fleet
    fleet.close()
