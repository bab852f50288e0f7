"""fashion-gpr: a fixed, seeded GPR1200-style mix of instance, category and Fashion-MNIST classes, split-clean."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from modalens.catalog import CatalogError, read_catalog

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (SHARED / "kagl-full" / "products.csv").exists(), reason="../shared/data/kagl-full is not present")


@pytest.fixture(scope="module")
def gpr_test():
    return read_catalog("fashion-gpr:test")


def test_every_subset_has_its_kind_of_class(gpr_test):
    sizes = Counter(p.get("retrieval_class") for p in gpr_test)
    by_subset = Counter(p.get("retrieval_subset") for p in gpr_test)
    assert set(by_subset) == {"kagl-product", "kagl-type", "fashion-mnist"}
    product = [p for p in gpr_test if p.get("retrieval_subset") == "kagl-product"]
    assert all(sizes[p.get("retrieval_class")] == 2 for p in product)  # one product, two photos
    pairs: dict[str, set] = {}
    for p in product:
        pairs.setdefault(p.get("retrieval_class"), set()).add(p.image)
    assert all(len(images) == 2 for images in pairs.values())  # the 224 px and the 60×80 photo, not one twice
    assert all(sizes[p.get("retrieval_class")] == 10 for p in gpr_test if p.get("retrieval_subset") != "kagl-product")
    assert len({p.id for p in gpr_test}) == len(gpr_test)


def test_test_and_val_draw_on_their_own_splits_and_never_change(gpr_test):
    assert {p.split for p in gpr_test if p.get("retrieval_subset") != "fashion-mnist"} == {"test"}
    val = read_catalog("fashion-gpr:val")
    assert {p.split for p in val} == {"val", "train"}  # Fashion-MNIST train stands in for a val split
    assert not {p.image for p in val} & {p.image for p in gpr_test}
    assert [p.id for p in read_catalog("fashion-gpr:test")] == [p.id for p in gpr_test]


def test_unknown_split_is_refused():
    with pytest.raises(CatalogError, match="'test' or 'val'"):
        read_catalog("fashion-gpr:train")
