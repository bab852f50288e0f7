"""Shared fixtures for the back-end tests: torch towers and their ONNX Runtime twins, exported once per session.

The exports go to the session's private cache (tests/conftest.py sets
MODALENS_CACHE), where the DualEncoder finds them too.
"""

from __future__ import annotations

import pytest
import torch

from modalens.encoders import create_image_tower, create_text_tower


@pytest.fixture(scope="module", autouse=True)
def _single_threads():
    """One torch thread: on a small, busy CI box thread pools spin. Results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def torch_image_tower():
    return create_image_tower("efficientnet-lite0").eval()


@pytest.fixture(scope="session")
def torch_text_tower():
    return create_text_tower("minilm-l6").eval()


@pytest.fixture(scope="session")
def onnx_image_tower(torch_image_tower):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from modalens.backends.onnx import OnnxImageTower

    return OnnxImageTower.from_torch(torch_image_tower, threads=1)


@pytest.fixture(scope="session")
def onnx_text_tower(torch_text_tower):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from modalens.backends.onnx import OnnxTextTower

    return OnnxTextTower.from_torch(torch_text_tower, threads=1)
