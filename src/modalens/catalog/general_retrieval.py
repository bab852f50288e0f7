"""``fashion-gpr``: a GPR1200-style general image-retrieval set, built from every catalogue modalens has.

GPR1200 (Schall et al., 2021), the set MCIP reports on, mixes several domains
into one collection of many classes and scores mAP over the whole of it: a
query must find its own class among every domain's distractors, so a model
cannot shine on one kind of picture and fail the others. Offline we have one
catalogue at two resolutions and Fashion-MNIST, which give three kinds of
"same":

* ``kagl-product``: one product photographed at 224 px (kagl-fashion) and at
  60×80 (kagl-full): instance level, across resolutions (like SOP);
* ``kagl-type``: article type × colour × gender of kagl-full, 10 photos a
  class: category level, as a shopper browses;
* ``fashion-mnist``: its 10 classes, 10 greyscale 28 px images each.

Each item carries ``retrieval_class`` (its subset and class) and
``retrieval_subset``; image→image retrieval with ``field=retrieval_class`` and
k = the whole gallery is GPR's mAP. ``fashion-gpr:test`` draws on test splits
(Fashion-MNIST test) to report; ``fashion-gpr:val`` on val splits
(Fashion-MNIST train) to choose with. The draw is seeded and fixed.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .schema import Catalog, CatalogError, Product

#: Sizes of the three subsets: products seen at both resolutions, type classes × photos, Fashion-MNIST per class.
PRODUCTS = 400
TYPE_CLASSES, PER_CLASS = 300, 10
SEED = 1200


def read_fashion_gpr(split: str = "test", *, limit: int | None = None) -> Catalog:
    """The mixed set for ``split`` (``test`` or ``val``); needs kagl-fashion, kagl-full and Fashion-MNIST."""
    from .readers import read_fashion_mnist, read_kagl

    if split not in ("test", "val"):
        raise CatalogError(f"fashion-gpr split must be 'test' or 'val', not {split!r}")
    rng = np.random.default_rng(SEED)
    sharp, small = read_kagl(name="kagl").split(split).products, read_kagl(name="kagl-full").split(split).products
    items = _product_pairs(sharp, small, rng) + _type_classes(small, rng)
    # Fashion-MNIST has no val split: its train split's first 10k (as the generalisation-val suite) stands in
    items += _fashion_mnist(read_fashion_mnist("test" if split == "test" else "train", limit=10_000).products, rng)
    return Catalog(items[:limit] if limit is not None else items, [], f"fashion-gpr-{split}", None)


def _item(subset: str, label: str, source: Product, suffix: str = "", image: str | None = None) -> Product:
    return Product(
        f"{subset}/{source.id}{suffix}",
        [image or source.image],
        title=source.title,
        attributes={**source.attributes, "retrieval_class": f"{subset}:{label}", "retrieval_subset": subset},
        split=source.split,
    )


def _product_pairs(sharp: list[Product], small: list[Product], rng: np.random.Generator) -> list[Product]:
    by_id = {p.id: p for p in small if p.image}
    both = sorted(p.id for p in sharp if p.image and p.id in by_id)
    chosen = sorted(rng.choice(len(both), size=min(PRODUCTS, len(both)), replace=False)) if both else []
    big = {p.id: p for p in sharp}
    items = []
    for i in chosen:
        pid = both[i]
        items += [_item("kagl-product", pid, big[pid], "@224"), _item("kagl-product", pid, by_id[pid], "@60x80")]
    return items


def _type_classes(small: list[Product], rng: np.random.Generator) -> list[Product]:
    groups: dict[str, list[Product]] = defaultdict(list)
    for p in small:
        if p.image and p.get("article_type") and p.get("colour"):
            groups[f"{p.get('article_type')}|{p.get('colour')}|{p.get('gender')}"].append(p)
    full = sorted(label for label, members in groups.items() if len(members) >= PER_CLASS)
    labels = [full[i] for i in sorted(rng.choice(len(full), size=min(TYPE_CLASSES, len(full)), replace=False))] if full else []
    items = []
    for label in labels:
        members = groups[label]
        for i in sorted(rng.choice(len(members), size=PER_CLASS, replace=False)):
            items.append(_item("kagl-type", label, members[i]))
    return items


def _fashion_mnist(products: list[Product], rng: np.random.Generator) -> list[Product]:
    groups: dict[str, list[Product]] = defaultdict(list)
    for p in products:
        groups[p.get("article_type")].append(p)
    items = []
    for label in sorted(groups):
        members = groups[label]
        for i in sorted(rng.choice(len(members), size=min(PER_CLASS, len(members)), replace=False)):
            items.append(_item("fashion-mnist", label, members[i]))
    return items
