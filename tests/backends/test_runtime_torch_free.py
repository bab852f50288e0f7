"""The torch-free halves of an export's query path equal the torch towers' own: tokens and letterboxed pixels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from backends_testkit import PHOTOS, TEXTS
from PIL import Image

from modalens.backends.runtime import ExportTokenizer, letterbox_pixels
from modalens.catalog.images import load_image

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def tokenizer_dir(torch_text_tower, tmp_path_factory):
    """The folder ``modalens export`` writes under ``tokenizer/``."""
    folder = tmp_path_factory.mktemp("tokenizer")
    torch_text_tower.tokenizer.save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize(
    "texts",
    [TEXTS, TEXTS[:1], [""], ["ÉCOLE naïve Straße 東京 ＡＢＣ  tabs\tand\nnewlines", "x" * 500, "[SEP] [PAD] literally"]],
    ids=["mixed-batch", "one", "empty", "unicode-and-long"],
)
def test_tokens_equal_the_towers_tokenizer(torch_text_tower, tokenizer_dir, texts):
    expected = torch_text_tower.tokenize(texts)
    got = ExportTokenizer(tokenizer_dir, torch_text_tower.max_length)(texts)
    assert set(got) == set(expected)
    for name, array in got.items():
        assert array.dtype == np.int64
        assert np.array_equal(array, expected[name].numpy()), name


def test_tokenizing_imports_neither_torch_nor_transformers(tokenizer_dir):
    code = (
        "import sys\n"
        "from modalens.backends.runtime import ExportTokenizer\n"
        f"ExportTokenizer({str(tokenizer_dir)!r}, 64)(['a red shirt'])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def _odd_images() -> list[Image.Image]:
    return [
        Image.new("RGBA", (300, 97), (10, 200, 30, 128)),  # wide, with alpha
        Image.new("L", (5, 400), 77),  # tall, greyscale, extreme aspect
        Image.new("RGB", (224, 224), (1, 2, 3)),  # already the right size: no resize
        Image.new("RGB", (1000, 1001), (250, 0, 9)),  # nearly square
        Image.new("P", (33, 47)),  # palette
    ]


def test_letterboxed_pixels_equal_the_torch_towers(torch_image_tower):
    tower = torch_image_tower
    for image in [load_image(str(p)) for p in PHOTOS[:4]] + _odd_images():
        expected = tower.preprocess(image).numpy()
        got = letterbox_pixels(image, tower.image_size, tower.pixel_mean, tower.pixel_std)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got, expected), image
