"""CatalogIndex: storage, exact search checked against an independent brute force, filters, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from index_helpers import DIM, fake_vector, make_product, make_products, pid

from modalens.index import CatalogIndex, Hit, IndexMismatchError, IndexNotFoundError, IndexStoreError


def fill(index: CatalogIndex, n: int, seed: int = 0) -> tuple[list, np.ndarray]:
    products = make_products(n)
    vectors = np.random.default_rng(seed).normal(size=(n, DIM))
    index.add(products, vectors, ["k"] * n)
    return products, vectors


def brute_force(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[tuple[str, float]]:
    """Reference top-k in float64, ties by id — written without any code under test."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    ranked = sorted(zip(ids, scores), key=lambda pair: (-pair[1], pair[0]))
    return ranked[:k]


# ------------------------------------------------------------------ search


def test_search_returns_exact_nearest_neighbours(index):
    products, vectors = fill(index, 1000)
    queries = np.random.default_rng(1).normal(size=(20, DIM))
    results = index.search(queries, k=10)
    assert len(results) == 20
    for query, hits in zip(queries, results):
        expected = brute_force(vectors, [p.id for p in products], query, 10)
        assert [h.id for h in hits] == [i for i, _ in expected]
        assert [h.score for h in hits] == pytest.approx([s for _, s in expected], abs=1e-5)
        assert all(isinstance(h, Hit) and h.product.id == h.id for h in hits)


def test_search_finds_itself_and_returns_products(index):
    products, vectors = fill(index, 50)
    hits = index.search(vectors[7] * 3.5)  # unnormalised 1-D query
    assert len(hits) == 1 and len(hits[0]) == 10
    assert hits[0][0].id == pid(7)
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0][0].product == products[7]


def test_hit_is_frozen(index):
    fill(index, 3)
    hit = index.search(np.ones(DIM), k=1)[0][0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.score = 2.0  # type: ignore[misc]


def test_ties_are_broken_by_id(index):
    e1 = np.eye(DIM)[0]
    products = [make_product(i) for i in (3, 1, 2, 0)]
    vectors = np.stack([e1, e1, e1, np.eye(DIM)[1]])
    index.add(products, vectors, ["k"] * 4)
    assert [h.id for h in index.search(e1, k=2)[0]] == [pid(1), pid(2)]
    assert [h.id for h in index.search(e1, k=4)[0]] == [pid(1), pid(2), pid(3), pid(0)]


def test_k_larger_than_index_returns_all(index):
    fill(index, 7)
    assert len(index.search(np.ones(DIM), k=100)[0]) == 7


@pytest.mark.parametrize("k", [0, -1, 10_001, 2.5, True, "3"])
def test_bad_k_rejected(index, k):
    fill(index, 3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.ones(DIM), k=k)


def test_bad_queries_rejected(index):
    fill(index, 3)
    for bad in (np.ones(DIM + 1), np.full(DIM, np.nan), np.zeros(DIM), np.ones((2, 2, DIM))):
        with pytest.raises(ValueError):
            index.search(bad)


def test_empty_index_searches_to_nothing(index):
    assert index.search(np.ones((2, DIM)), k=5) == [[], []]


# ----------------------------------------------------------------- filters


def test_narrow_filter_is_applied_before_ranking(index):
    """The 5 matching items are the 5 *least* similar: over-fetch-and-drop would miss them."""
    products = make_products(1000)
    vectors = np.random.default_rng(2).normal(size=(1000, DIM))
    query = np.random.default_rng(3).normal(size=DIM)
    worst = [r[0] for r in brute_force(vectors, [p.id for p in products], -query, 5)]  # lowest scores
    for p in products:
        if p.id in worst:
            p.attributes["colour"] = "Teal"
    index.add(products, vectors, ["k"] * 1000)
    hits = index.search(query, k=5, where={"colour": "Teal"})[0]
    assert sorted(h.id for h in hits) == sorted(worst)
    subset = [i for i, p in enumerate(products) if p.id in worst]
    expected = brute_force(vectors[subset], [products[i].id for i in subset], query, 5)
    assert [h.id for h in hits] == [i for i, _ in expected]


def test_filters_narrow_and_combine(index):
    products, vectors = fill(index, 300)
    by_id = {p.id: p for p in products}
    where = {"gender": "Men", "colour": ["Blue", "Navy Blue"], "split": "train", "price_min": 15, "price_max": 50}

    def matches(p):
        return (
            p.attributes["gender"] == "Men"
            and p.attributes["colour"] in ("Blue", "Navy Blue")
            and p.split == "train"
            and 15 <= p.price <= 50
        )

    allowed = [p for p in products if matches(p)]
    assert 10 < len(allowed) < 300
    query = np.random.default_rng(4).normal(size=DIM)
    hits = index.search(query, k=10, where=where)[0]
    assert len(hits) == 10 and all(matches(by_id[h.id]) for h in hits)
    idx = [products.index(p) for p in allowed]
    expected = brute_force(vectors[idx], [p.id for p in allowed], query, 10)
    assert [h.id for h in hits] == [i for i, _ in expected]
    # fewer matches than k: all of them, no more
    assert {h.id for h in index.search(query, k=1000, where=where)[0]} == {p.id for p in allowed}


def test_filter_on_unknown_field_matches_nothing(index):
    fill(index, 20)
    assert index.search(np.ones(DIM), k=5, where={"no_such_field": "x"}) == [[]]
    assert index.search(np.ones(DIM), k=5, where={"gender": "Nobody"}) == [[]]


def test_filter_values_are_stripped(index):
    fill(index, 20)
    hits = index.search(np.ones(DIM), k=20, where={"gender": " Men "})[0]
    assert len(hits) == 10 and all(h.product.attributes["gender"] == "Men" for h in hits)


def test_price_filter_skips_products_without_price(index):
    index.add([make_product(0, price=None), make_product(1, price=5.0)], np.ones((2, DIM)), ["k", "k"])
    assert [h.id for h in index.search(np.ones(DIM), where={"price_max": 100})[0]] == [pid(1)]


@pytest.mark.parametrize(
    "where",
    [
        {"gender": 3},
        {"gender": []},
        {"gender": None},
        {"gender": ["Men", 2]},
        {"gender": ""},
        {"price_min": "cheap"},
        {"price_max": float("nan")},
        {"price_min": True},
        {"": "x"},
        ["gender", "Men"],
    ],
)
def test_malformed_filters_rejected(index, where):
    fill(index, 5)
    with pytest.raises(ValueError):
        index.search(np.ones(DIM), where=where)


# ----------------------------------------------------------------- writing


def test_add_normalises_and_round_trips(index):
    products, _ = fill(index, 10)
    assert len(index) == 10
    assert index.ids() == [p.id for p in products]
    assert index.get(pid(4)) == products[4]
    assert pid(4) in index and "nope" not in index
    assert index.content_keys() == {p.id: "k" for p in products}


def test_upsert_replaces_product_vector_and_key(index):
    products, _ = fill(index, 10)
    new_vector = fake_vector("replacement")
    replaced = make_product(3, title="Replaced title")
    index.add([replaced], new_vector[None, :], ["k2"])
    assert len(index) == 10
    assert index.get(pid(3)).title == "Replaced title"
    assert index.content_keys()[pid(3)] == "k2"
    assert index.ids() == [p.id for p in products]  # row order kept
    top = index.search(new_vector, k=1)[0][0]
    assert top.id == pid(3) and top.score == pytest.approx(1.0, abs=1e-5)
    assert top.product.title == "Replaced title"


def test_delete(index):
    _, vectors = fill(index, 10)
    index.search(vectors[2])  # load the matrix, so delete must refresh it
    assert index.delete([pid(2), "unknown"]) == 1
    assert len(index) == 9 and pid(2) not in index
    assert all(h.id != pid(2) for h in index.search(vectors[2], k=10)[0])
    with pytest.raises(KeyError):
        index.get(pid(2))
    assert index.delete([]) == 0


def test_nan_vectors_rejected_and_nothing_written(index):
    fill(index, 5)
    generation = index.meta["generation"]
    vectors = np.random.default_rng(0).normal(size=(4, DIM))
    vectors[2, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.add([make_product(i) for i in range(10, 14)], vectors, ["k"] * 4)
    vectors[2, 5] = np.inf
    with pytest.raises(ValueError):
        index.add([make_product(i) for i in range(10, 14)], vectors, ["k"] * 4)
    assert len(index) == 5 and index.meta["generation"] == generation


@pytest.mark.parametrize(
    "n_products, shape, n_keys",
    [(2, (2, DIM + 1), 2), (2, (3, DIM), 2), (2, (2, DIM), 1), (2, (DIM,), 2)],
)
def test_add_rejects_mismatched_shapes(index, n_products, shape, n_keys):
    with pytest.raises(ValueError):
        index.add(make_products(n_products), np.ones(shape), ["k"] * n_keys)
    assert len(index) == 0


def test_add_rejects_zero_vectors_and_duplicate_ids(index):
    with pytest.raises(ValueError, match="zero"):
        index.add(make_products(2), np.zeros((2, DIM)), ["k", "k"])
    with pytest.raises(ValueError, match="duplicate"):
        index.add([make_product(1), make_product(1)], np.ones((2, DIM)), ["k", "k"])
    assert len(index) == 0


def test_unknown_id_raises_keyerror_with_message(index):
    fill(index, 3)
    with pytest.raises(KeyError, match="'missing' is not in the index"):
        index.get("missing")


def test_failures_recorded_replaced_and_cleared_by_add(index):
    index.record_failures([(pid(1), "image missing"), (pid(2), "decode error")])
    index.record_failures([(pid(1), "still missing")])
    assert index.failures() == [(pid(1), "still missing"), (pid(2), "decode error")]
    index.add([make_product(1)], np.ones((1, DIM)), ["k"])
    assert index.failures() == [(pid(2), "decode error")]
    assert len(index) == 1


def test_matrix_refreshes_after_writes_from_another_handle(index, tmp_path):
    fill(index, 5)
    index.search(np.ones(DIM))
    with CatalogIndex.open(tmp_path / "idx", model="test-model") as other:
        other.add([make_product(99)], fake_vector("x")[None, :], ["k"])
    assert index.search(fake_vector("x"), k=1)[0][0].id == pid(99)


# ------------------------------------------------------------ open / create


def test_meta_recorded(index):
    meta = index.meta
    assert meta["model"] == "test-model" and meta["dim"] == DIM and meta["dtype"] == "float32"
    assert meta["created"] and meta["modalens_version"]


def test_reopen_keeps_everything(tmp_path):
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM) as ix:
        ix.add(make_products(4), np.eye(DIM)[:4], ["a", "b", "c", "d"])
    with CatalogIndex.open(tmp_path / "idx") as ix:
        assert len(ix) == 4 and ix.model == "m" and ix.dim == DIM
        assert ix.search(np.eye(DIM)[2], k=1)[0][0].id == pid(2)
    assert (tmp_path / "idx" / "index.sqlite").is_file()


def test_different_model_raises_mismatch(tmp_path):
    CatalogIndex.create(tmp_path / "idx", model="clip-a", dim=DIM).close()
    with pytest.raises(IndexMismatchError, match="clip-a.*clip-b"):
        CatalogIndex.open(tmp_path / "idx", model="clip-b")
    with pytest.raises(IndexMismatchError, match="clip-a.*clip-b"):
        CatalogIndex.create(tmp_path / "idx", model="clip-b", dim=DIM)
    with pytest.raises(IndexMismatchError, match="32"):
        CatalogIndex.create(tmp_path / "idx", model="clip-a", dim=32)
    with CatalogIndex.create(tmp_path / "idx", model="clip-a", dim=DIM) as ix:  # exist_ok
        assert ix.model == "clip-a"


def test_create_exist_ok_false(tmp_path):
    CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM).close()
    with pytest.raises(FileExistsError):
        CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM, exist_ok=False)


def test_open_missing_index_says_how_to_build(tmp_path):
    for path in (tmp_path / "nothing", tmp_path):
        with pytest.raises(IndexNotFoundError, match="modalens index CATALOGUE"):
            CatalogIndex.open(path)
    assert not (tmp_path / "nothing").exists()
    assert not (tmp_path / "index.sqlite").exists()
    assert issubclass(IndexNotFoundError, FileNotFoundError)


def test_create_validates_arguments(tmp_path):
    with pytest.raises(ValueError):
        CatalogIndex.create(tmp_path / "a", model="", dim=DIM)
    with pytest.raises(ValueError):
        CatalogIndex.create(tmp_path / "b", model="m", dim=0)


def test_closed_index_refuses_use(tmp_path):
    ix = CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM)
    ix.close()
    ix.close()
    with pytest.raises(IndexStoreError, match="closed"):
        len(ix)


def test_filter_on_attribute_names_with_dots_and_spaces(index):
    products = [make_product(0, attributes={"a.b": "x", "article type": "Shirts"}), make_product(1)]
    index.add(products, np.ones((2, DIM)), ["k", "k"])
    assert [h.id for h in index.search(np.ones(DIM), where={"a.b": "x"})[0]] == [pid(0)]
    assert [h.id for h in index.search(np.ones(DIM), where={"article type": ["Shirts"]})[0]] == [pid(0)]


def test_attribute_counts_group_values_by_field(tmp_path):
    from modalens.catalog.schema import Product
    from modalens.index import CatalogIndex

    products = [
        Product(id=str(i), attributes={"gender": g, "colour": c})
        for i, (g, c) in enumerate([("Men", "Blue"), ("Women", "Blue"), ("Men", "Red"), ("Men", "")])
    ]
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=2) as index:
        index.add(products, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]], ["k"] * 4)
        counts = index.attribute_counts(["gender", "colour", "season"])
    assert counts == {"gender": {"Men": 3, "Women": 1}, "colour": {"Blue": 2, "Red": 1}, "season": {}}


def test_attribute_values_and_price_range_come_from_the_data(tmp_path) -> None:
    """What a page builds its filter menus from: every attribute any product carries, and the prices."""
    from modalens.catalog.schema import Product

    products = [
        Product(id="a", attributes={"brand": "Acme", "fit": "slim"}, price=10),
        Product(id="b", attributes={"brand": "Acme"}, price=25.5),
        Product(id="c", attributes={"brand": "Zed"}),
    ]
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=2) as index:
        assert index.price_range() is None
        index.add(products, np.eye(2, dtype=np.float32)[[0, 1, 0]], ["k"] * 3)
        assert index.attribute_values() == {"brand": {"Acme": 2, "Zed": 1}, "fit": {"slim": 1}}
        assert index.price_range() == (10.0, 25.5, 2)


# ------------------------------------------------------------------ the face


def test_the_split_store_keeps_one_face() -> None:
    """CatalogIndex is assembled from one module per job; callers still see one class, from either import path."""
    import modalens.index.store as store

    assert store.CatalogIndex is CatalogIndex and store.Hit is Hit and store.IndexStoreError is IndexStoreError
    assert {"ANN_FILE", "ANN_THRESHOLD", "BACKENDS", "INDEX_FILE", "MAX_K"} <= set(vars(store))
    public = {name for name in dir(CatalogIndex) if not name.startswith("_")}
    assert public == {
        "add", "attribute_counts", "attribute_values", "backend", "close", "compact", "content_keys", "create", "delete", "dim", "failures",
        "get", "ids", "keyword_search", "meta", "model", "open", "price_range", "record_failures", "search", "search_backend", "sync",
        # scene photos beside the products (index/scenes.py)
        "add_scenes", "delete_scenes", "get_scene", "record_scene_failures", "scene_content_keys", "scene_count", "scene_failures",
        "scene_ids", "scene_instances", "search_scenes",
    }
