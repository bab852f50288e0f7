"""BM25 keyword search (SQLite FTS5) and hybrid ranking; plus opening an index written in format 1."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
from index_helpers import DIM, clustered_vectors, make_product, make_products, pid

from modalens.index import CatalogIndex
from modalens.index.schema import _fts5_available

pytestmark = pytest.mark.skipif(not _fts5_available(), reason="this Python's sqlite3 has no FTS5")


def bm25_by_hand(tf: int, doc_len: int, avgdl: float, n_docs: int, n_with_term: int) -> float:
    """One term's BM25 (k1 = 1.2, b = 0.75) with SQLite FTS5's idf (clamped to 1e-6 when not positive)."""
    idf = math.log((n_docs - n_with_term + 0.5) / (n_with_term + 0.5))
    idf = idf if idf > 0 else 1e-6
    return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * doc_len / avgdl))


def test_bm25_ranking_by_hand_on_four_documents(index):
    # indexed text is "id title attribute-values": d1 cotton shirt | d2 silk scarf silk | d3 linen trousers long | d4 denim jacket
    titles = {"d1": "cotton shirt", "d2": "silk scarf silk", "d3": "linen trousers long", "d4": "denim jacket"}
    products = [make_product(0, id=i, title=t, attributes={}) for i, t in titles.items()]
    index.add(products, np.eye(DIM)[:4], ["k"] * 4)
    lengths = {"d1": 3, "d2": 4, "d3": 4, "d4": 3}  # tokens, the id included
    avgdl = sum(lengths.values()) / 4  # 3.5
    expected_d2 = bm25_by_hand(2, 4, avgdl, 4, 1)  # "silk" twice in d2
    expected_d1 = bm25_by_hand(1, 3, avgdl, 4, 1)  # "shirt" once in d1
    assert expected_d2 == pytest.approx(1.12003, abs=1e-4) and expected_d1 == pytest.approx(0.89989, abs=1e-4)

    hits = index.keyword_search("Silk SHIRT", k=10)
    assert [h.id for h in hits] == ["d2", "d1"]  # d3, d4 match no word
    assert [h.score for h in hits] == pytest.approx([expected_d2, expected_d1], rel=1e-6)
    assert hits[0].product.title == "silk scarf silk"

    # a word in half the documents has idf <= 0 (clamped): it barely counts next to a rare word
    index.add([make_product(0, id="d4", title="denim shirt", attributes={})], np.eye(DIM)[3:4], ["k"])
    hits = index.keyword_search("shirt denim", k=10)
    assert [h.id for h in hits] == ["d4", "d1"]


def test_keyword_search_matches_ids_and_attributes_filters_and_follows_writes(index):
    index.add(make_products(30), clustered_vectors(30), ["k"] * 30)
    assert [h.id for h in index.keyword_search(pid(17))] == [pid(17)]  # an id (SKU) is a keyword
    navy = index.keyword_search("navy", k=50)
    assert navy and all(h.product.attributes["colour"] == "Navy Blue" for h in navy)
    men = index.keyword_search("navy", k=50, where={"gender": "Men", "price_max": 40})
    assert {h.id for h in men} == {h.id for h in navy if h.product.attributes["gender"] == "Men" and h.product.price <= 40}
    index.add([make_product(17, title="Renamed thing")], clustered_vectors(1), ["k2"])
    assert [h.id for h in index.keyword_search("renamed")] == [pid(17)]
    index.delete([pid(17)])
    assert index.keyword_search("renamed") == [] and index.keyword_search(pid(17)) == []
    assert index.keyword_search("!!! ???") == []  # no words: nothing, not an FTS5 syntax error
    assert len(index.keyword_search('product" NEAR( "', k=50)) == 29  # quotes are never read as FTS5 syntax


BACKENDS = ["exact", pytest.param("faiss", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("faiss") is None, reason="needs faiss-cpu"))]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_hybrid_lifts_an_exact_title_word(tmp_path, backend):
    n = 400
    vectors = clustered_vectors(n, seed=1)
    rng = np.random.default_rng(2)
    query = vectors[7] + 0.05 * rng.normal(size=DIM)
    query /= np.linalg.norm(query)
    other = rng.normal(size=DIM)
    other -= (other @ query) * query
    vectors[123] = 0.4 * query + np.sqrt(0.84) * other / np.linalg.norm(other)  # cosine 0.4: far from the top
    products = make_products(n)
    products[123] = make_product(123, title="Trail runner ZX9000")
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM, backend=backend) as index:
        index.add(products, vectors, ["k"] * n)
        plain = index.search(query, k=5)[0]
        assert [h.id for h in index.search(query, k=n)[0]].index(pid(123)) >= 10
        hybrid = index.search(query, k=5, text="zx9000 running shoes", hybrid_weight=0.5)[0]
        assert hybrid[0].id == pid(123)
        assert hybrid[0].score == pytest.approx(0.5 * 0.4 + 0.5 * 1.0, abs=1e-5)  # the best bm25 normalises to 1
        assert [h.id for h in hybrid[1:]] == [h.id for h in plain[:4]]  # nothing else matched a word
        assert index.search(query, k=5, text="zx9000", hybrid_weight=0.0)[0] == plain
        # the filter holds for keyword candidates too
        where = {"gender": "Women"}  # product 123 is odd, i.e. Men
        filtered = index.search(query, k=5, where=where, text="zx9000", hybrid_weight=0.5)[0]
        assert pid(123) not in {h.id for h in filtered} and all(h.product.attributes["gender"] == "Women" for h in filtered)
        # one text per query
        both = index.search(np.stack([query, vectors[8]]), k=3, text=["zx9000", "nothing-matches"], hybrid_weight=0.5)
        assert both[0][0].id == pid(123) and both[1][0].id == pid(8)
        # hybrid_weight 1: keyword order decides, the vector only breaks ties
        assert index.search(query, k=1, text="zx9000", hybrid_weight=1.0)[0][0].id == pid(123)


@pytest.mark.parametrize(
    "kwargs",
    [{"text": "x", "hybrid_weight": 1.5}, {"hybrid_weight": 0.5}, {"text": ["a", "b"], "hybrid_weight": 0.5},
     {"text": 3, "hybrid_weight": 0.5}, {"text": "x", "hybrid_weight": True}],
)  # fmt: skip
def test_hybrid_arguments_validated(index, kwargs):
    index.add(make_products(3), clustered_vectors(3), ["k"] * 3)
    with pytest.raises(ValueError):
        index.search(np.ones(DIM), **kwargs)


def downgrade_to_format_1(db_path) -> None:
    """What an index written before format 2 looks like: no gen column, deletion log, keywords or uuid."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.executescript(
        """
        DROP TABLE products_fts; DROP TABLE removed; DROP INDEX vectors_gen;
        ALTER TABLE vectors DROP COLUMN gen;
        DELETE FROM meta WHERE key IN ('uuid', 'backend', 'removed_floor');
        UPDATE meta SET value = '1' WHERE key = 'format';
        """
    )
    conn.close()


def test_format_1_index_is_migrated_on_open(tmp_path):
    vectors = clustered_vectors(50)
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM) as index:
        index.add(make_products(50), vectors, ["k"] * 50)
    downgrade_to_format_1(tmp_path / "idx" / "index.sqlite")
    with CatalogIndex.open(tmp_path / "idx", model="m") as index:
        meta = index.meta
        assert meta["format"] == 2 and meta["uuid"] and meta["backend"] == "auto"
        assert len(index) == 50 and index.search(vectors[3], k=1)[0][0].id == pid(3)
        assert [h.id for h in index.keyword_search(pid(3))] == [pid(3)]
        index.delete([pid(3)])
        index.add([make_product(60)], vectors[3:4], ["k"])
        assert index.search(vectors[3], k=1)[0][0].id == pid(60)
