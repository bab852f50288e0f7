"""Search engine on real photos with the shipped default model: index, text/image queries, filters."""

from __future__ import annotations

import pytest

from modalens.catalog import read_catalog
from modalens.index import IndexMismatchError, IndexNotFoundError
from modalens.models import DEFAULT_MODEL
from modalens.search import SearchEngine


@pytest.fixture(scope="module")
def engine(mini_catalog, tmp_path_factory):
    engine = SearchEngine(tmp_path_factory.mktemp("index"), progress=False)
    report = engine.build(read_catalog(mini_catalog))
    assert report.added == 40 and report.failed == 0
    yield engine
    engine.close()


def test_rebuild_of_an_unchanged_catalogue_embeds_nothing(engine, mini_catalog):
    report = engine.build(read_catalog(mini_catalog))
    assert (report.added, report.skipped_unchanged) == (0, 40)


def test_a_photo_finds_its_own_product_first(engine, mini_catalog):
    products = read_catalog(mini_catalog).products
    for product in products[::7]:
        hits = engine.search(image=product.image, k=3)
        assert hits[0].id == product.id
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_titles_find_their_products(engine, mini_catalog):
    """Each title as a query: its product should be near the top of 40 (chance of top-3 is 7.5%)."""
    products = read_catalog(mini_catalog).products
    top3 = sum(p.id in [h.id for h in engine.search(p.title, k=3)] for p in products)
    assert top3 / len(products) >= 0.6


def test_words_find_the_right_kind_of_product(engine):
    for query, article_type in [("a wrist watch", "Watches"), ("sunglasses", "Sunglasses"), ("blue denim jeans", "Jeans")]:
        hits = engine.search(query, k=2)
        assert [h.product.get("article_type") for h in hits].count(article_type) >= 1, query


def test_filters_apply_inside_the_search(engine, mini_catalog):
    hits = engine.search("shoes", k=40, where={"gender": ["Women"]})
    assert hits and all(h.product.get("gender") == "Women" for h in hits)
    women = sum(p.get("gender") == "Women" for p in read_catalog(mini_catalog).products)
    assert len(hits) == women


def test_text_and_image_together(engine, mini_catalog):
    product = read_catalog(mini_catalog).products[0]
    both = engine.query_vector(product.title, product.image)
    assert abs(float((both**2).sum()) - 1) < 1e-5
    assert engine.search(product.title, product.image, k=1)[0].id == product.id


def test_empty_query_is_an_error(engine):
    with pytest.raises(ValueError, match="text query, an image"):
        engine.search("  ")


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexNotFoundError, match="modalens index"):
        SearchEngine(tmp_path / "nowhere", progress=False).search("shirt")


def test_index_refuses_another_models_vectors(engine, tmp_path):
    from modalens.index import CatalogIndex

    CatalogIndex.create(tmp_path / "other", model="some-other-model@123", dim=512).close()
    with pytest.raises(IndexMismatchError):  # named: unnamed, an engine takes the index's own model
        SearchEngine(tmp_path / "other", DEFAULT_MODEL, progress=False).search("shirt")


def test_hybrid_ranking_lifts_an_exact_title_word(engine, mini_catalog):
    """A brand name means little to the vector side; blended BM25 puts its product first."""
    product = next(p for p in read_catalog(mini_catalog).products if p.title.startswith("Wildcraft"))
    hybrid = engine.search("Wildcraft", k=3, hybrid_weight=0.5)
    assert hybrid[0].id == product.id
    assert engine.search("Wildcraft", k=3, hybrid_weight=0.0)[0].score != hybrid[0].score


def test_repeated_text_queries_reuse_the_embedding(engine):
    calls = []
    original = engine.model.encode_text
    engine.model.encode_text = lambda texts: calls.append(list(texts)) or original(texts)
    try:
        first = engine.search("red  casual shoes", k=3)
        again = engine.search("red casual shoes ", k=3)  # same words, other spacing
        other = engine.search("blue jeans", k=3)
    finally:
        engine.model.encode_text = original
    assert [h.id for h in first] == [h.id for h in again]
    assert calls == [["red casual shoes"], ["blue jeans"]]
    assert [h.id for h in other] != [h.id for h in first]
