"""The Python API (``modalens.load``, ``Model``, ``Index``): the docs run as written, and what they promise holds.

docs/python.md and the README's "Python API" section are run as doctests (every ``pycon`` block, in
order, in one namespace) in a folder holding what they name: ``photo.jpg`` (a grey T-shirt the shop
does not sell) and ``products.csv`` (tests/fixtures/custom-shop: ``id,image,title,price,brand`` only).
"""

from __future__ import annotations

import csv
import doctest
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modalens
from modalens.models.factory import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHOP = FIXTURES / "custom-shop" / "products.csv"
PHOTO = FIXTURES / "mini-catalog" / "images" / "11780.jpg"  # Lee grey T-shirt: not in the shop


def pycon_blocks(markdown: str) -> str:
    """Every ```pycon block of a Markdown text, joined (one doctest session)."""
    return "\n".join(re.findall(r"^```pycon\n(.*?)^```", markdown, flags=re.S | re.M))


def readme_python_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Python API", 1)[1].split("\n## ", 1)[0]


@pytest.fixture
def docs_folder(tmp_path, monkeypatch):
    """A folder as the docs assume it: photo.jpg and the shop's products.csv (photos by absolute path)."""
    with SHOP.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["image"] = str((SHOP.parent / row["image"]).resolve())
    with (tmp_path / "products.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(PHOTO, tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_doctest(text: str, name: str) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, name, name, 0)
    assert test.examples, f"{name} has no pycon examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda s: failures.append(s))
    assert runner.failures == 0, "".join(failures)


failures: list[str] = []


@pytest.mark.parametrize("source", ["docs/python.md", "README.md"])
def test_the_documented_examples_run_as_written(docs_folder, source):
    failures.clear()
    text = (ROOT / source).read_text(encoding="utf-8")
    blocks = pycon_blocks(readme_python_section() if source == "README.md" else text)
    run_doctest(blocks, source)


def test_import_modalens_is_cheap_and_names_resolve_on_use():
    code = (
        "import sys, modalens\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'PIL', 'fastapi', 'onnxruntime') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert {'load', 'Index', 'Model', 'Hit', 'Product'} <= set(dir(modalens)) and set(modalens.__all__) <= set(dir(modalens))\n"
        "assert callable(modalens.load) and modalens.Index.__name__ == 'Index' and 'torch' not in sys.modules\n"
        "try:\n    modalens.nothing_here\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit('no AttributeError')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def model():
    return modalens.load()


def test_encode_images_takes_paths_pil_images_and_bytes_alike(model):
    from PIL import Image

    one = model.encode_images(PHOTO)
    many = model.encode_images([str(PHOTO), Image.open(PHOTO), PHOTO.read_bytes()])
    assert one.shape == (1, model.embed_dim) and many.shape == (3, model.embed_dim) and many.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(many, np.repeat(one, 3, axis=0), atol=1e-5)  # the same photo, whatever form it came in
    # batching changes nothing
    np.testing.assert_allclose(model.encode_images([PHOTO] * 3, batch_size=2), many, atol=1e-5)


def test_encode_text_is_in_the_image_space(model, mini_catalog):
    from modalens.catalog import read_catalog

    products = read_catalog(mini_catalog).products[:12]
    images = model.encode_images([p.image for p in products])
    texts = model.encode_text([p.title for p in products])
    assert texts.shape == (12, model.embed_dim)
    assert model.encode_text("a red dress").shape == (1, model.embed_dim)
    # most titles find their own photo among the twelve
    assert (np.argmax(texts @ images.T, axis=1) == np.arange(12)).mean() >= 0.5


def test_zero_shot_matches_the_catalogue_labels(model, mini_catalog):
    from modalens.catalog import read_catalog

    products = read_catalog(mini_catalog).products
    labels = sorted({p.get("article_type") for p in products})
    predicted = model.zero_shot([p.image for p in products], labels)
    assert sum(a == p.get("article_type") for a, p in zip(predicted, products)) >= 30  # of 40, 20 labels
    ranked = model.tag([products[0].image], model.classifier(labels), top=3)[0]
    assert len(ranked) == 3 and ranked[0][1] >= ranked[1][1] >= ranked[2][1] and 0 < sum(p for _, p in ranked) <= 1.0001


def test_bad_input_says_what_is_wrong(model, tmp_path):
    from modalens.catalog import ImageError

    missing = tmp_path / "nope.jpg"
    with pytest.raises((ImageError, FileNotFoundError), match="nope.jpg"):
        model.encode_images([missing])
    with pytest.raises(TypeError):
        model.encode_text([1, 2])
    with pytest.raises(ValueError):
        model.encode_images([PHOTO], batch_size=0)


def test_index_reopens_with_its_model_and_shares_the_filter_vocabulary(tmp_path, mini_catalog):
    folder = tmp_path / "idx"
    with modalens.Index(folder) as index:
        assert len(index) == 0
        report = index.add(mini_catalog)
        assert report.added == 40
    with modalens.Index(folder) as index:
        assert index.model.name == DEFAULT_MODEL and "11652" in index
        by_column = [h.id for h in index.search("black", k=10, filters={"articleType": "Watches", "baseColour": "Black"})]
        by_name = [h.id for h in index.search("black", k=10, filters={"article_type": "Watches", "colour": ["Black"]})]
        assert by_column == by_name and set(by_column) == {"11652", "13839"}
        assert index.get("11652").title.startswith("Puma")
        with pytest.raises(ValueError, match="allowed: .*colour"):
            index.search("shirt", filters={"colr": "Blue"})
