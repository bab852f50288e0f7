"""The Milvus store behind the index interface, against Milvus Lite: filters, updates, deletes, resumable builds.

Every search is checked against the SQLite store (exact back-end) holding the
same products and vectors, so both stores are held to one meaning of a filter.
"""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import DIM, clustered_vectors, fake_embed, make_product, make_products, pid

from modalens.index import CatalogIndex, IndexMismatchError, IndexNotFoundError, build_index
from modalens.index.stores import create_store, open_store, parse_store

pytest.importorskip("pymilvus", reason="the Milvus store needs modalens[milvus] (pymilvus)")
pytest.importorskip("milvus_lite", reason="the Milvus store tests run on Milvus Lite (modalens[milvus])")

from modalens.index import milvus as milvus_module  # noqa: E402
from modalens.index.milvus import MilvusIndex, milvus_filter  # noqa: E402

N = 400


@pytest.fixture(autouse=True)
def _probe_every_list(monkeypatch):
    """Probe every IVF list, so Milvus' answers are exact and can be compared with the exact SQLite store."""
    monkeypatch.setitem(milvus_module.SEARCH_PARAMS, "params", {"nprobe": 4096})


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same 400 products (colours, prices, splits) and vectors in a Milvus Lite file and in SQLite."""
    folder = tmp_path_factory.mktemp("milvus")
    products, vectors = make_products(N), clustered_vectors(N, seed=3)
    products[2].price = None  # test split, price 12 before: a product without a price never matches a price bound
    for i, product in enumerate(products):
        product.attributes["fit"] = "slim" if i % 4 == 0 else "regular"  # no column of its own: the JSON path
    products[10].attributes["brand"] = 'Levi"s \\ Co'
    milvus = MilvusIndex.create(str(folder / "store.db"), model="m", dim=DIM)
    sqlite = CatalogIndex.create(folder / "sqlite", model="m", dim=DIM, backend="exact")
    for index in (milvus, sqlite):
        index.add(products, vectors, ["k"] * N)
    yield milvus, sqlite, vectors
    milvus.close()
    sqlite.close()


def ranked(index, query, k=10, where=None):
    return [(h.id, round(h.score, 4)) for h in index.search(query, k=k, where=where)[0]]


@pytest.mark.parametrize(
    "where",
    [
        None,
        {"colour": "White"},
        {"colour": ["Black", "Navy Blue"]},
        {"gender": "Women", "price_min": 30, "price_max": 45},
        {"split": "test", "price_max": 12.5},
        {"colour": "Teal"},  # nothing matches
        {"fit": "slim", "colour": ["Black", "White"]},
        {"brand": 'Levi"s \\ Co'},
    ],
)
def test_filters_mean_what_they_mean_in_sqlite(stores, where):
    milvus, sqlite, vectors = stores
    for query in (vectors[5], vectors[123] + vectors[300]):
        expected = ranked(sqlite, query, where=where)
        assert ranked(milvus, query, where=where) == expected
        assert (where == {"colour": "Teal"}) == (expected == [])
    if where == {"brand": 'Levi"s \\ Co'}:
        assert [pid for pid, _ in expected] == [pid(10)]
    if where == {"split": "test", "price_max": 12.5}:
        assert len(expected) == 7 and pid(2) not in dict(expected)  # every match, and not the product without a price


def test_filter_values_are_quoted_not_parsed():
    """Known fields filter their indexed column; any other attribute the JSON record."""
    expression = milvus_filter({"brand": ['Levi"s', "a\\b"], "price_min": 3, "fit": "slim"})
    assert expression == (
        'brand in ["Levi\\"s", "a\\\\b"] and price >= 3.0 and (product["attributes"]["fit"] == "slim")'
    )
    with pytest.raises(ValueError, match="non-empty"):
        milvus_filter({"colour": []})


def test_updates_deletes_and_failures(tmp_path):
    vectors = clustered_vectors(50, seed=8)
    with MilvusIndex.create(str(tmp_path / "s.db"), model="m", dim=DIM) as index:
        index.add(make_products(50), vectors, ["k1"] * 50)
        index.record_failures([(pid(60), "unreadable photo")])
        generation = index.meta["generation"]
        moved = make_product(3, attributes={"colour": "Teal"})
        index.add([moved], -vectors[3:4], ["k2"])  # an update: new vector, record and key, same id
        index.add([make_product(60)], vectors[:1], ["k1"])  # a product that failed before, now embedded
        assert len(index) == 51 and index.meta["generation"] > generation
        hit = index.search(-vectors[3], k=1)[0][0]
        assert (hit.id, hit.product.attributes["colour"]) == (pid(3), "Teal") and hit.score == pytest.approx(1.0, abs=1e-5)
        assert index.content_keys([pid(3), pid(4), "nope"]) == {pid(3): "k2", pid(4): "k1"}
        assert index.failures() == []
        assert index.delete([pid(3), pid(4), "nope"]) == 2
        assert len(index) == 49 and pid(3) not in index
        assert pid(3) not in {h.id for h in index.search(-vectors[3], k=49)[0]}
        with pytest.raises(KeyError):
            index.get(pid(4))


def test_build_resumes_and_reopens_with_model_check(tmp_path):
    """build_index (the same resumable builder as the SQLite store) through the store factory, then reopened."""
    store = f"milvus:{tmp_path / 'b.db'}"
    products = make_products(120)
    index = create_store(store, tmp_path, model="m", dim=DIM)
    first = build_index(index, products[:70], fake_embed, batch_size=32, content_key=lambda p: "v1")
    again = build_index(index, products, fake_embed, batch_size=32, content_key=lambda p: "v1")
    index.close()
    assert (first.added, again.added, again.skipped_unchanged) == (70, 50, 70)
    with open_store(store, tmp_path, model="m") as reopened:
        assert reopened.ids() == sorted(p.id for p in products)  # exactly one vector per product
        assert reopened.search_backend == "milvus"
    with pytest.raises(IndexMismatchError, match="model 'm'"):
        open_store(store, tmp_path, model="other")
    with pytest.raises(IndexNotFoundError, match="no Milvus Lite file"):
        open_store(f"milvus:{tmp_path / 'missing.db'}", tmp_path, model="m")


def test_store_names_are_checked(tmp_path):
    assert parse_store(None, tmp_path) == ("sqlite", str(tmp_path))
    assert parse_store("milvus:http://db:19530#shop", tmp_path) == ("milvus", "http://db:19530#shop")
    for bad in ("postgres:x", "milvus:", "milvus"):
        with pytest.raises(ValueError, match="not one of"):
            parse_store(bad, tmp_path)
    with pytest.raises(ValueError, match="collection name"):
        MilvusIndex.create(f"{tmp_path / 'c.db'}#9-bad", model="m", dim=DIM)
    with MilvusIndex.create(str(tmp_path / "h.db"), model="m", dim=DIM) as index:
        with pytest.raises(Exception, match="hybrid keyword ranking needs the SQLite store"):
            index.search(np.ones(DIM), text="red", hybrid_weight=0.5)


def test_a_filter_widens_the_probe_by_its_selectivity(stores, monkeypatch):
    """Milvus scans only the probed lists: a filter allowing 20% of the products probes 2 / 0.2 = 10x the lists,
    counted once per filter (until this handle writes); a filter allowing nothing answers without a search."""
    milvus, _, vectors = stores
    monkeypatch.setitem(milvus_module.SEARCH_PARAMS, "params", {"nprobe": 8})
    white = milvus_filter({"colour": "White"})
    assert milvus._search_params(white)["params"]["nprobe"] == 80  # 80 of 400 products are White
    assert milvus._selectivity[white] == pytest.approx(0.2)
    assert milvus._search_params(milvus_filter({"gender": "Men", "colour": "Teal"})) is None
    assert milvus.search(vectors[:2], k=5, where={"colour": "Teal"}) == [[], []]
    assert milvus._search_params("")["params"]["nprobe"] == 8
    assert milvus_module._widened(8, 0.001) == milvus_module.INDEX_PARAMS["params"]["nlist"]  # every list at most


def test_filter_menu_counts_equal_sqlite(stores):
    """The server's facets on Milvus: each known attribute's value counts and the price range, as SQLite counts them."""
    from modalens.catalog.schema import KNOWN_ATTRIBUTES

    milvus, sqlite, _ = stores
    in_sqlite = {name: values for name, values in sqlite.attribute_values().items() if name in KNOWN_ATTRIBUTES}
    assert milvus.attribute_values() == in_sqlite and in_sqlite["colour"]
    assert milvus.price_range() == pytest.approx(sqlite.price_range())
