"""Fixtures shared by the whole headless test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the reference data sets (``../shared/data`` beside the checkout).

    Tests that need it are skipped, with the reason, where the folder is absent.
    """
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA_DIR} is absent")
    return SHARED_DATA_DIR


@pytest.fixture
def mrml_context():
    """A fresh headless scene with Slicer's application and module logics (real MRML, slicer-core)."""
    from SpatioTemporalCommonLib.context import MRMLContext

    return MRMLContext.create_headless()
