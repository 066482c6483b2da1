"""Shared fixtures: paths to the OFA authors' assets and small helpers for real models."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "ofa-assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    """`../shared/ofa-assets`: tests read the authors' files from there, never from the repo."""
    if not (ASSETS / "PROVENANCE.md").is_file():
        pytest.fail(f"OFA assets not found at {ASSETS}; they are expected beside the checkout")
    return ASSETS
