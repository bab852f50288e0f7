"""Fixtures for the index tests."""

from __future__ import annotations

import pytest
from index_helpers import DIM

from modalens.index import CatalogIndex


@pytest.fixture
def index(tmp_path):
    """A fresh empty index (dim 16), closed after the test."""
    with CatalogIndex.create(tmp_path / "idx", model="test-model", dim=DIM) as ix:
        yield ix
