"""The pair generator: each stated change happens, and everything is deterministic in its seed."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from modalens.catalog import read_catalog
from modalens.catalog.images import load_image
from modalens.encoders.features import file_key
from modalens.matching.pairs import (
    IMAGE_CHANGES,
    SELLER_VIEWS,
    apply_view,
    brand_of,
    catalogue_offer,
    colour_shift,
    hard_negative_kind,
    hard_negatives,
    jpeg_recompress,
    make_scenario,
    pad_background,
    perturb_title,
    random_crop,
    rescale,
    seller_offer,
    view_recipe,
)


@pytest.fixture(scope="module")
def products(mini_catalog):
    return read_catalog(mini_catalog).products


@pytest.fixture(scope="module")
def photo(products):
    return load_image(products[0].image)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_crop_keeps_most_of_each_side(photo):
    out = random_crop(photo, random.Random(1))
    w, h = photo.size
    assert 0.78 * w - 1 <= out.size[0] < w and 0.78 * h - 1 <= out.size[1] < h


def test_rescale_keeps_size_but_loses_detail(photo):
    out = rescale(photo, random.Random(1))
    assert out.size == photo.size
    assert np.abs(pixels(out) - pixels(photo)).mean() > 0.5


def test_pad_background_adds_a_coloured_border(photo):
    out = pad_background(photo, random.Random(1))
    assert out.size[0] > photo.size[0] and out.size[1] > photo.size[1]
    corner = out.getpixel((0, 0))
    assert corner != (255, 255, 255) and all(190 <= c <= 245 for c in corner)


def test_jpeg_and_colour_shift_change_pixels_slightly(photo):
    for change in (jpeg_recompress, colour_shift):
        out = change(photo, random.Random(3))
        diff = np.abs(pixels(out) - pixels(photo)).mean()
        assert out.size == photo.size and 0.1 < diff < 30, change.__name__


def test_views_are_deterministic_and_differ_from_each_other(products):
    path = products[0].image
    key = file_key(path)
    image = load_image(path)
    outs = {}
    for view in SELLER_VIEWS:
        assert view_recipe(view, key) == view_recipe(view, key)
        assert set(view_recipe(view, key)) <= set(IMAGE_CHANGES)
        a, b = apply_view(image, view, key), apply_view(load_image(path), view, key)
        assert np.array_equal(pixels(a), pixels(b))
        outs[view] = a
    assert len({pixels(o).tobytes() for o in outs.values()}) == len(SELLER_VIEWS)
    with pytest.raises(ValueError):
        view_recipe("greyscale", key)


def test_every_change_is_used_across_a_catalogue(products):
    used = {c for p in products for v in SELLER_VIEWS for c in view_recipe(v, file_key(p.image))}
    assert used == set(IMAGE_CHANGES)


def test_title_changes_do_what_they_say():
    title, brand = "Nike Men Black Running Shoes", "Nike"
    out, applied = perturb_title(title, random.Random(0), brand, changes=["reorder"])
    assert applied == ["reorder"] and sorted(out.split()) == sorted(title.split()) and out != title
    out, applied = perturb_title(title, random.Random(0), brand, changes=["drop_brand"])
    assert out == "Men Black Running Shoes" and applied == ["drop_brand"]
    out, applied = perturb_title(title, random.Random(0), brand, changes=["abbreviate"])
    assert out == "Nike M Blk Running Shoe"
    out, applied = perturb_title(title, random.Random(0), brand, changes=["typo"])
    changed = [(a, b) for a, b in zip(title.split(), out.split()) if a != b]
    assert applied == ["typo"] and len(changed) == 1 and abs(len(changed[0][0]) - len(changed[0][1])) <= 1


def test_brand_is_read_from_the_title(products):
    by_title = {p.title: brand_of(p) for p in products}
    assert by_title["Lee Men Printed Grey Tshirts"] == "Lee"
    assert by_title["United Colors of Benetton Men Solid Grey TShirt"] == "United Colors of Benetton"


def test_seller_offers_are_deterministic_and_close_in_price(products):
    for p in products[:10]:
        a, change = seller_offer(p, 7, 0)
        b, _ = seller_offer(p, 7, 0)
        assert a == b and a.product_id == p.id and a.id != p.id
        assert set(a.views) <= set(SELLER_VIEWS) and len(a.images) in (1, 2) and all(i == p.image for i in a.images)
        listed = catalogue_offer(p)
        assert 0.87 <= a.price / listed.price <= 1.13 and listed.price == catalogue_offer(p).price
        assert change.title_changes
    assert seller_offer(products[0], 7, 0)[0] != seller_offer(products[0], 8, 0)[0]


def test_hard_negatives_are_other_colours_or_other_brands(products):
    negatives = hard_negatives(products)
    found = 0
    for i, js in negatives.items():
        for j in js:
            assert hard_negative_kind(products[i], products[j]) in ("other-colour", "other-brand")
            found += 1
    assert found > 0


def test_scenario_has_unmatched_and_repeated_offers(products):
    s = make_scenario(products, seed=1)
    listed = {o.product_id for o in s.catalogue}
    assert 0 < len(listed) < len(products)
    assert any(o.product_id not in listed for o in s.new)
    assert len(s.new) > len({o.product_id for o in s.new})
    assert make_scenario(products, seed=1).new == s.new


def test_near_duplicates_are_same_type_and_colour_with_near_identical_titles():
    from modalens.catalog.schema import Product
    from modalens.matching.pairs import near_duplicates

    def prod(pid, title, kind="Tops", colour="Pink"):
        return Product(pid, images=[], title=title, attributes={"article_type": kind, "colour": colour})

    products = [
        prod("13335", "Gini and Jony Kids Girls Printed Pink Tops"),
        prod("13336", "Gini and Jony Kids Girls Printed Pink Tops"),  # the same title: a near duplicate
        prod("13337", "Gini & Jony Kids Girls Printed Pink Top"),  # 6 of 9 words shared: not near-identical at 0.75
        prod("13338", "Gini and Jony Kids Girls Printed Pink Tops", colour="Blue"),  # another colour: not a duplicate
        prod("13339", "Gini and Jony Kids Girls Printed Pink Tops", kind="Dresses"),  # another type
        prod("13340", "gini AND jony kids girls printed, pink tops!"),  # case and punctuation ignored
    ]
    assert near_duplicates(products) == [(0, 1), (0, 5), (1, 5)]
    assert (0, 2) in near_duplicates(products, min_jaccard=0.5)


def test_near_duplicate_negatives_add_each_unproposed_pair_once():
    """Every offer pair across two near-duplicate products, scored, labelled non-matching, minus the candidate pairs."""
    from types import SimpleNamespace

    from modalens.catalog.schema import Product
    from modalens.matching.evaluate import near_duplicate_negatives
    from modalens.matching.offers import Offer

    attrs = {"article_type": "Tops", "colour": "Pink"}
    a, b = (Product(pid, images=["x.jpg"], title="Gini and Jony Kids Girls Printed Pink Tops", attributes=attrs) for pid in ("A", "B"))
    c = Product("C", images=["x.jpg"], title="Levis Men Boxer Navy Blue Brief", attributes={"article_type": "Briefs", "colour": "Navy"})
    new = [Offer("a1", title="t", product_id="A"), Offer("b1", title="t", product_id="B"), Offer("b2", title="t", product_id="B"),
           Offer("c1", title="t", product_id="C")]
    cat = [Offer("A", title="t", product_id="A"), Offer("B", title="t", product_id="B")]
    new_emb = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]], np.float32)
    cat_emb = np.array([[1, 0], [0, 1]], np.float32)
    cands = [("new-catalogue", 0, 1, 0.0), ("new-new", 0, 1, 0.8)]  # already proposed: a1-B and a1-b1
    val = SimpleNamespace(products=[a, b, c], scenario=SimpleNamespace(new=new, catalogue=cat),
                          candidates=lambda matcher, k: (None, None, 0, cands, new_emb, cat_emb))
    scores, labels = near_duplicate_negatives(None, val)
    # left: a1-b2 (new-new), b1-A, b2-A (new-catalogue); a1-B and a1-b1 were candidates; C has no near duplicate
    assert sorted(np.round(scores, 3).tolist()) == [0.6, 0.6, 0.8] and not labels.any()
