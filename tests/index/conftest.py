"""Fixtures for the index tests."""

from __future__ import annotations

import pytest
from index_helpers import DIM

from modalens.index import CatalogIndex

try:  # one OpenMP thread: on a shared two-core machine faiss's spinning threads cost more than they give
    import faiss

    faiss.omp_set_num_threads(1)
except ImportError:
    pass


@pytest.fixture
def index(tmp_path):
    """A fresh empty index (dim 16), closed after the test."""
    with CatalogIndex.create(tmp_path / "idx", model="test-model", dim=DIM) as ix:
        yield ix
