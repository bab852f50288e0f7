"""Shared fixtures for the tower tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _single_torch_thread():
    """One intra-op thread: on a small, busy CI box torch's thread pool spins and a 224 px
    forward pass goes from ~50 ms to seconds. Results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
