"""KAGL and Fashion-MNIST readers: synthetic IDX files everywhere, the real data when this machine has it."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog_testkit import FASHION_MNIST_ROOT, KAGL_ROOT, read_idx_plain, write_idx
from modalens.catalog import (
    FASHION_MNIST_CLASSES,
    CatalogError,
    load_image,
    read_catalog,
    read_fashion_mnist,
    read_kagl,
)

needs_kagl = pytest.mark.skipif(not (KAGL_ROOT / "products.csv").is_file(), reason="KAGL data not in ../shared")
needs_fmnist = pytest.mark.skipif(not FASHION_MNIST_ROOT.is_dir(), reason="dataset-fashion-mnist not installed")


# ---------------------------------------------------------------- Fashion-MNIST, synthetic


@pytest.fixture()
def tiny_idx(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    labels = np.array([9, 0, 3, 8], dtype=np.uint8)
    root = tmp_path / "idx"
    root.mkdir()
    write_idx(root / "t10k-images-idx3-ubyte.gz", images)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels)
    return root, images, labels


def test_fashion_mnist_from_synthetic_idx(tiny_idx, tmp_path: Path) -> None:
    root, images, labels = tiny_idx
    cache = tmp_path / "cache"
    catalog = read_fashion_mnist("test", root=root, cache_dir=cache)
    assert [p.id for p in catalog] == [f"fmnist-test-{i:05d}" for i in range(4)]
    for i, product in enumerate(catalog):
        name = FASHION_MNIST_CLASSES[labels[i]]
        assert product.title == name and product.attributes["article_type"] == name and product.split == "test"
        assert Path(product.image).parent == cache
        np.testing.assert_array_equal(np.asarray(Image.open(product.image)), images[i])
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*"))


def test_fashion_mnist_reuses_written_pngs(tiny_idx, tmp_path: Path) -> None:
    root, _, _ = tiny_idx
    cache = tmp_path / "cache"
    first = read_fashion_mnist("test", root=root, cache_dir=cache, limit=2)
    assert len(first) == 2 and len(list(cache.iterdir())) == 2
    marker = Path(first[0].image)
    marker.write_bytes(b"sentinel")  # a file already there is kept, not rewritten
    second = read_fashion_mnist("test", root=root, cache_dir=cache)
    assert len(second) == 4 and marker.read_bytes() == b"sentinel"


def test_fashion_mnist_default_cache_dir_honours_env(tiny_idx, tmp_path: Path, monkeypatch) -> None:
    root, _, _ = tiny_idx
    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path / "envcache"))
    catalog = read_fashion_mnist("test", root=root, limit=1)
    assert Path(catalog[0].image).parent == tmp_path / "envcache" / "fashion-mnist" / "test"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("magic", "bad IDX magic number 0x00000804"),
        ("short", "header says shape"),
        ("labels", "4 Fashion-MNIST test images but 3 labels"),
        ("class", "label 10 is not a class index"),
        ("gzip", "cannot read IDX file"),
    ],
)
def test_fashion_mnist_rejects_damaged_idx(tiny_idx, tmp_path: Path, damage: str, message: str) -> None:
    root, images, labels = tiny_idx
    if damage == "magic":
        write_idx(root / "t10k-images-idx3-ubyte.gz", images, magic=0x0804)
    elif damage == "short":
        write_idx(root / "t10k-images-idx3-ubyte.gz", images, extra=b"\0")
    elif damage == "labels":
        write_idx(root / "t10k-labels-idx1-ubyte.gz", labels[:3])
    elif damage == "class":
        write_idx(root / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 10, 3]))
    else:
        whole = (root / "t10k-images-idx3-ubyte.gz").read_bytes()
        (root / "t10k-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])  # gzip cut mid-stream
    with pytest.raises(CatalogError, match=message):
        read_fashion_mnist("test", root=root, cache_dir=tmp_path / "c")


def test_fashion_mnist_missing_or_bad_split(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="apt-get install dataset-fashion-mnist"):
        read_fashion_mnist("train", root=tmp_path, cache_dir=tmp_path / "c")
    with pytest.raises(CatalogError, match="'train' or 'test'"):
        read_fashion_mnist("val", root=tmp_path)


# ---------------------------------------------------------------- Fashion-MNIST, the installed dataset


@needs_fmnist
def test_installed_fashion_mnist(tmp_path: Path) -> None:
    catalog = read_fashion_mnist("test", cache_dir=tmp_path, limit=50)
    labels = read_idx_plain(FASHION_MNIST_ROOT / "t10k-labels-idx1-ubyte.gz", header=8)[:50]
    pixels = read_idx_plain(FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz", header=16)[: 50 * 784].reshape(50, 28, 28)
    assert len(catalog) == 50 and len(list(tmp_path.glob("*.png"))) == 50
    assert [p.title for p in catalog] == [FASHION_MNIST_CLASSES[i] for i in labels]
    for i in (0, 17, 49):
        image = Image.open(catalog[i].image)
        assert image.size == (28, 28)
        np.testing.assert_array_equal(np.asarray(image), pixels[i])
        assert load_image(catalog[i].image).size == (28, 28)


@needs_fmnist
def test_read_catalog_fashion_mnist_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODALENS_CACHE", str(tmp_path))
    catalog = read_catalog("fashion-mnist:train", limit=3)
    assert [p.id for p in catalog] == ["fmnist-train-00000", "fmnist-train-00001", "fmnist-train-00002"]
    assert {p.split for p in catalog} == {"train"}


# ---------------------------------------------------------------- KAGL


@pytest.fixture(scope="module")
def kagl_rows() -> list[dict[str, str]]:
    with open(KAGL_ROOT / "products.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@needs_kagl
def test_kagl_reads_every_product(kagl_rows) -> None:
    catalog = read_kagl(KAGL_ROOT)
    assert catalog.errors == []
    assert len(catalog) == len(kagl_rows) == 8613
    assert [p.id for p in catalog] == [r["id"] for r in kagl_rows]
    counts = Counter(p.split for p in catalog)
    assert counts == Counter(r["split"] for r in kagl_rows)
    assert (counts["train"], counts["val"], counts["test"]) == (6723, 944, 946)
    assert all(Path(p.image).is_absolute() and Path(p.image).is_file() for p in catalog)
    row, product = kagl_rows[123], catalog[123]
    assert product.title == row["title"]
    assert product.attributes["article_type"] == row["articleType"]
    assert product.attributes["colour"] == row["baseColour"]
    assert product.attributes["master_category"] == row["masterCategory"]
    assert Path(product.image).resolve() == (KAGL_ROOT / row["image"]).resolve()


@needs_kagl
def test_kagl_real_images_decode(kagl_rows) -> None:
    catalog = read_kagl(KAGL_ROOT, limit=None)
    for product in (catalog[0], catalog[len(catalog) // 2], catalog[-1]):
        image = load_image(product.image, draft_size=(224, 224))
        assert image.mode == "RGB" and min(image.size) >= 16


@needs_kagl
def test_kagl_found_without_a_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the cwd-relative default misses; the checkout-relative one finds it
    monkeypatch.delenv("MODALENS_KAGL", raising=False)
    catalog = read_kagl(limit=5)
    assert len(catalog) == 5 and catalog.name == "kagl"


def test_kagl_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="KAGL dataset not found"):
        read_kagl(tmp_path)
