"""The faiss IVF-Flat back-end behind CatalogIndex.search: recall, incremental writes, filters, its cache file.

Every expectation is checked against an exact float64 brute force written
without the code under test (``top_ids``) or against the exact back-end.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from index_helpers import (
    DIM,
    clustered_vectors,
    make_product,
    make_products,
    pid,
    top_ids,
)

from modalens.index import CatalogIndex
from modalens.index import ann as ann_module
from modalens.index import vectors as vectors_module  # the back-end's knobs live there
from modalens.index.ann import AnnCacheError, FaissIVFSearch, read_cache_header
from modalens.index.vectors import ANN_FILE

pytest.importorskip("faiss", reason="the ANN back-end needs modalens[ann] (faiss-cpu)")


def ann_index(path, n: int, *, dim: int = DIM, seed: int = 0) -> tuple[CatalogIndex, np.ndarray]:
    index = CatalogIndex.create(path, model="test-model", dim=dim, backend="faiss")
    vectors = clustered_vectors(n, dim, seed=seed)
    index.add(make_products(n), vectors, ["k"] * n)
    return index, vectors


def recall_at(found: list[list[str]], expected: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, expected)]))


# ------------------------------------------------------------------ recall


def test_recall_at_10_on_clustered_vectors(tmp_path):
    """Enough vectors for real clustering (many lists, a partial probe): recall@10 >= 0.95 against exact."""
    n, dim = 12_000, 32
    index, vectors = ann_index(tmp_path / "idx", n, dim=dim)
    with index:
        assert index.search_backend == "faiss-ivf"
        searcher = index._searcher
        assert searcher.index.nlist > 100 and searcher.nprobe < searcher.index.nlist / 4  # really approximate
        queries = clustered_vectors(200, dim, seed=7)  # new points from the same clusters
        found = [[h.id for h in hits] for hits in index.search(queries, k=10)]
        with CatalogIndex.open(tmp_path / "idx", backend="exact") as exact:
            assert exact.search_backend == "exact"
            expected = [[h.id for h in hits] for hits in exact.search(queries, k=10)]
        assert recall_at(found, expected) >= 0.95
        hits = index.search(vectors[123], k=1)[0]
        assert hits[0].id == pid(123) and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_scores_are_exact_cosines_ordered_with_ties_by_id(tmp_path):
    index, vectors = ann_index(tmp_path / "idx", 500)
    with index:
        query = np.random.default_rng(3).normal(size=DIM)
        hits = index.search(query, k=20)[0]
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        expected = {pid(i): s for i, s in enumerate(unit @ (query / np.linalg.norm(query)))}
        assert [h.score for h in hits] == pytest.approx([expected[h.id] for h in hits], abs=1e-5)
        assert [(-h.score, h.id) for h in hits] == sorted((-h.score, h.id) for h in hits)


def test_k_beyond_probed_lists_still_returns_k(tmp_path):
    index, _ = ann_index(tmp_path / "idx", 3000)
    with index:
        assert len(index.search(np.ones(DIM), k=2500)[0]) == 2500
        assert len(index.search(np.ones(DIM), k=5000)[0]) == 3000


# ----------------------------------------------------------------- filters


def test_filters_inside_ann_search_return_k_exactly(tmp_path):
    """The 12 matching products are the least similar of 5000: over-fetch-and-drop would return none."""
    n = 5000
    vectors = clustered_vectors(n)
    query = vectors[0]
    worst = top_ids(-vectors, [pid(i) for i in range(n)], query, 12)
    products = [make_product(i, attributes={"colour": "Teal" if pid(i) in worst else "Blue"}) for i in range(n)]
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM, backend="faiss") as index:
        index.add(products, vectors, ["k"] * n)
        hits = index.search(query, k=10, where={"colour": "Teal"})[0]
        allowed = np.array([pid(i) in worst for i in range(n)])
        assert [h.id for h in hits] == top_ids(vectors, [pid(i) for i in range(n)], query, 10, allowed)
        assert {h.id for h in index.search(query, k=50, where={"colour": "Teal"})[0]} == set(worst)


def test_broad_filter_returns_k_matching_with_high_recall(tmp_path):
    n = 6000
    vectors = clustered_vectors(n, seed=4)
    products = [make_product(i, attributes={"colour": "Red" if i % 10 == 0 else "Blue"}) for i in range(n)]
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM, backend="faiss") as index:
        index.add(products, vectors, ["k"] * n)
        queries = clustered_vectors(40, seed=5)
        results = index.search(queries, k=10, where={"colour": "Red"})
        assert all(len(hits) == 10 and all(h.product.attributes["colour"] == "Red" for h in hits) for hits in results)
        allowed = np.arange(n) % 10 == 0
        expected = [top_ids(vectors, [pid(i) for i in range(n)], q, 10, allowed) for q in queries]
        assert recall_at([[h.id for h in hits] for hits in results], expected) >= 0.95


# ------------------------------------------- filtered probing on real embeddings

KAGL_EMBEDDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "kagl-embeddings.npz"


@pytest.fixture(scope="module")
def kagl_ivf():
    """3,600 real KAGL image embeddings (48-d, tests/fixtures/make_kagl_embeddings.py) in 64 lists, 4 probed, and
    400 held-out ones as queries: real clusters, with colours and article types that gather in some lists."""
    data = np.load(KAGL_EMBEDDINGS)
    vectors = data["vectors"].astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    n = 3600
    searcher = FaissIVFSearch.build([pid(i) for i in range(n)], vectors[:n], nlist=64)
    searcher.nprobe = 4
    attributes = {key: data[key][:n] for key in ("colour", "article_type")}
    return searcher, vectors[:n], vectors[n:], attributes


def exact_rows(base: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[set[int]]:
    scores = queries.astype(np.float64) @ base.astype(np.float64).T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in scores]


def row_recall(searcher: FaissIVFSearch, base, queries, mask=None) -> float:
    found = searcher.search(queries, 10, mask)
    expected = exact_rows(base, queries, 10, mask)
    return float(np.mean([len({row for row, _ in f} & e) / len(e) for f, e in zip(found, expected)]))


@pytest.mark.parametrize(
    ("field", "value"), [("colour", "White"), ("colour", "Black"), ("article_type", "Tshirts"), ("article_type", "Watches")]
)
def test_filtered_queries_keep_the_unfiltered_recall(kagl_ivf, field, value):
    """Colours (12-22% of products) and article types (3-17%) on real embeddings: filtered recall@10 is at least
    the unfiltered one (0.91 here, 4 of 64 lists probed). A global "probe 1 / selectivity more lists" rule gave 0.89-0.92
    on the broad filters of this data: it probes the lists nearest the query, which may hold few allowed rows."""
    searcher, base, queries, attributes = kagl_ivf
    plain = row_recall(searcher, base, queries)
    assert 0.85 < plain < 0.97  # really approximate, so the filtered rule is tested
    mask = attributes[field] == value
    assert row_recall(searcher, base, queries, mask) >= plain


def test_filter_probes_only_lists_holding_allowed_rows(kagl_ivf):
    """The lists a filtered query scans hold allowed rows; a broad filter scans fewer lists than hold any (it is
    approximate), a selective one every list that holds one (exact) and still only those."""
    searcher, base, queries, attributes = kagl_ivf
    target = 1.5 * searcher.nprobe * len(searcher) / searcher.index.nlist
    for value, exact in (("Black", False), ("Heels", True)):
        field = "colour" if value == "Black" else "article_type"
        mask = attributes[field] == value
        allowed = searcher.filter_lists(mask)
        holding = set(np.unique(searcher.list_of_row[mask]).tolist())
        assert set(allowed.lists.tolist()) == holding
        keys, _ = searcher._probe_lists(queries, allowed, target)
        for row in keys:
            probed = [key for key in row.tolist() if key >= 0]
            assert set(probed) <= holding and len(probed) == len(set(probed))
            assert (len(probed) == len(holding)) is exact
            assert allowed.counts[np.isin(allowed.lists, probed)].sum() >= min(target, allowed.n_allowed)
    heels = attributes["article_type"] == "Heels"
    assert row_recall(searcher, base, queries, heels) == 1.0


def test_filter_lists_follow_writes(tmp_path):
    """Rows added, replaced and removed move in and out of the per-list counts a cached filter uses."""
    n = 3000
    vectors = clustered_vectors(n, seed=2)
    searcher = FaissIVFSearch.build([pid(i) for i in range(n)], vectors)
    mask = np.zeros(n, dtype=bool)
    mask[:300] = True
    before = searcher.filter_lists(mask)
    assert before.n_allowed == 300 and before.counts.sum() == 300
    searcher.remove([pid(i) for i in range(100)])
    searcher.upsert([pid(100)], -vectors[100:101])  # replaced: another list, most likely
    searcher.upsert(["new"], vectors[:1])  # takes the lowest freed row, 0, which the mask allows
    after = searcher.filter_lists(np.resize(mask, searcher.n_rows))
    assert searcher.ids[0] == "new" and after.n_allowed == 201  # rows 100-299, and "new" in row 0
    assert after.counts.sum() == after.n_allowed
    rebuilt = ann_module._list_of_row(searcher.index, searcher.n_rows)
    assert np.array_equal(rebuilt, searcher.list_of_row)
    hits = searcher.search(-vectors[100:101], 1, np.resize(mask, searcher.n_rows))[0]
    assert searcher.ids[hits[0][0]] == pid(100) and hits[0][1] == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------- incremental writes


def test_add_update_delete_visible_without_rebuild(tmp_path):
    index, vectors = ann_index(tmp_path / "idx", 3000)
    with index:
        index.search(vectors[0])
        searcher, faiss_index = index._searcher, index._searcher.index
        index.search(vectors[0], where={"colour": "Blue"})  # a cached filter column, updated in place below

        new_vector = clustered_vectors(1, seed=99)[0]
        index.add([make_product(5000, attributes={"colour": "Teal"})], new_vector[None, :], ["k"])
        moved = -vectors[10]
        index.add([make_product(10, title="moved", attributes={"colour": "Teal"})], moved[None, :], ["k2"])
        assert index.delete([pid(20), pid(21)]) == 2

        hits = index.search(np.stack([new_vector, moved, vectors[20]]), k=3)
        assert hits[0][0].id == pid(5000) and hits[0][0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[1][0].id == pid(10) and hits[1][0].product.title == "moved"
        assert not {pid(20), pid(21)} & {h.id for h in hits[2]}
        teal = index.search(new_vector, k=10, where={"colour": "Teal"})[0]
        assert sorted(h.id for h in teal) == [pid(10), pid(5000)]
        assert index.search(vectors[10], k=5, where={"colour": "Blue"})[0][0].id != pid(10)
        # the same trained structure, changed in place: no rebuild
        assert index._searcher is searcher and searcher.index is faiss_index
        assert len(searcher) == 3000 - 2 + 1 and faiss_index.ntotal == len(searcher)
        # a deleted product's row is reused by the next new one
        index.add([make_product(5001)], clustered_vectors(1, seed=98), ["k"])
        index.search(new_vector)
        assert searcher.n_rows == 3000 and index._searcher is searcher


def test_writes_from_another_handle_are_caught_up(tmp_path):
    index, vectors = ann_index(tmp_path / "idx", 2000)
    with index:
        index.search(vectors[0])
        searcher = index._searcher
        with CatalogIndex.open(tmp_path / "idx", backend="exact") as writer:
            writer.add([make_product(7777)], vectors[5][None, :] * -1, ["k"])
            writer.delete([pid(5)])
        top = index.search(-vectors[5], k=2)[0]
        assert top[0].id == pid(7777) and pid(5) not in {h.id for h in top}
        assert index._searcher is searcher


# ------------------------------------------------------------ cache file


def test_cache_file_written_and_reused(tmp_path, caplog):
    index, vectors = ann_index(tmp_path / "idx", 2000)
    with index:
        assert index.sync() == "faiss-ivf"
        generation = index.meta["generation"]
    header = read_cache_header(tmp_path / "idx" / ANN_FILE)
    assert header["generation"] == generation and header["dim"] == DIM and header["uuid"]
    caplog.set_level(logging.INFO, logger="modalens.index")
    with CatalogIndex.open(tmp_path / "idx") as index:  # backend "faiss" is stored in meta
        assert index.backend == "faiss"
        assert index.search(vectors[9], k=1)[0][0].id == pid(9)
    assert not [r for r in caplog.records if "rebuild" in r.message or "built" in r.message]


def test_stale_cache_is_caught_up_from_sqlite(tmp_path, caplog):
    index, vectors = ann_index(tmp_path / "idx", 2000)
    with index:
        index.sync()
    with CatalogIndex.open(tmp_path / "idx", backend="exact") as writer:  # writes the cache does not see
        writer.add([make_product(9000)], -vectors[3][None, :], ["k"])
        writer.delete([pid(3), pid(4)])
    caplog.set_level(logging.INFO, logger="modalens.index")
    with CatalogIndex.open(tmp_path / "idx") as index:
        assert read_cache_header(tmp_path / "idx" / ANN_FILE)["generation"] == index.meta["generation"] - 2
        top = index.search(np.stack([-vectors[3], vectors[4]]), k=3)
        assert top[0][0].id == pid(9000)
        assert not {pid(3), pid(4)} & {h.id for hits in top for h in hits}
        assert len(index._searcher) == 1999
    assert not [r for r in caplog.records if "rebuild" in r.message or "built" in r.message]


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty", "other_index", "future"])
def test_corrupt_or_foreign_cache_is_detected_and_rebuilt(tmp_path, caplog, damage):
    index, vectors = ann_index(tmp_path / "idx", 1500)
    cache = tmp_path / "idx" / ANN_FILE
    with index:
        index.sync()
    data = cache.read_bytes()
    if damage == "flip":
        cache.write_bytes(data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1 :])
    elif damage == "truncate":
        cache.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "garbage":
        cache.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "other_index":  # same model, dim and generation, another store
        other, _ = ann_index(tmp_path / "other", 1500, seed=5)
        with other:
            other.sync()
        shutil.copy(tmp_path / "other" / ANN_FILE, cache)
    elif damage == "future":  # the database was restored from an older copy; the cache is ahead of it
        shutil.copy(tmp_path / "idx" / "index.sqlite", tmp_path / "old.sqlite")
        with CatalogIndex.open(tmp_path / "idx") as index:
            index.add([make_product(9999)], np.ones((1, DIM)), ["k"])
            index.compact()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / "idx" / f"index.sqlite{suffix}").unlink(missing_ok=True)
        shutil.copy(tmp_path / "old.sqlite", tmp_path / "idx" / "index.sqlite")
    caplog.set_level(logging.INFO, logger="modalens.index")
    with CatalogIndex.open(tmp_path / "idx") as index:
        hits = index.search(vectors[:50], k=1)
        assert [h[0].id for h in hits] == [pid(i) for i in range(50)]
        assert pid(9999) not in index
        assert index.search_backend == "faiss-ivf"
        generation = index.meta["generation"]
    assert [r for r in caplog.records if "rebuild" in r.message]
    # the rebuilt cache was written back, whole
    assert FaissIVFSearch.load(cache, tag={}).generation == generation


def test_cache_load_rejects_a_foreign_tag(tmp_path):
    index, _ = ann_index(tmp_path / "idx", 500)
    with index:
        index.sync()
        tag = index._ann_tag()
    FaissIVFSearch.load(tmp_path / "idx" / ANN_FILE, tag=tag)
    with pytest.raises(AnnCacheError, match="another index"):
        FaissIVFSearch.load(tmp_path / "idx" / ANN_FILE, tag={**tag, "uuid": "someone-else"})


def test_pruned_deletion_log_forces_a_rebuild_for_older_caches(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(vectors_module, "REMOVED_LOG_LIMIT", 5)
    index, vectors = ann_index(tmp_path / "idx", 1000)
    with index:
        index.sync()
    shutil.copy(tmp_path / "idx" / ANN_FILE, tmp_path / "old-cache.bin")
    with CatalogIndex.open(tmp_path / "idx") as index:
        index.delete([pid(i) for i in range(10)])
        index.compact()  # writes a new cache and prunes the log up to it
        assert index.meta["removed_floor"] == index.meta["generation"]
    shutil.copy(tmp_path / "old-cache.bin", tmp_path / "idx" / ANN_FILE)  # a cache from before the pruned deletes
    caplog.set_level(logging.INFO, logger="modalens.index")
    with CatalogIndex.open(tmp_path / "idx") as index:
        assert not {pid(i) for i in range(10)} & {h.id for h in index.search(vectors[:10], k=3)[0]}
        assert len(index._searcher) == 990
    assert [r for r in caplog.records if "cannot be caught up" in r.message]


# ------------------------------------------------------------ back-end choice


def test_auto_switches_to_ann_above_the_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(vectors_module, "ANN_THRESHOLD", 300)
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM) as index:
        assert index.backend == "auto"
        vectors = clustered_vectors(400)
        index.add(make_products(200), vectors[:200], ["k"] * 200)
        assert index.search_backend == "exact"
        index.add([make_product(i) for i in range(200, 400)], vectors[200:], ["k"] * 200)
        assert index.search_backend == "faiss-ivf"
        assert index.search(vectors[350], k=1)[0][0].id == pid(350)


def test_without_faiss_the_index_searches_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(vectors_module, "faiss_available", lambda: False)
    with CatalogIndex.create(tmp_path / "idx", model="m", dim=DIM, backend="faiss") as index:
        vectors = clustered_vectors(50)
        index.add(make_products(50), vectors, ["k"] * 50)
        with pytest.warns(RuntimeWarning, match="faiss-cpu is not installed"):
            assert index.search(vectors[7], k=1)[0][0].id == pid(7)
        assert index.search_backend == "exact"


def test_backend_is_validated_and_stored(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        CatalogIndex.create(tmp_path / "a", model="m", dim=DIM, backend="hnsw")
    CatalogIndex.create(tmp_path / "b", model="m", dim=DIM, backend="exact").close()
    with CatalogIndex.open(tmp_path / "b") as index:
        assert index.backend == "exact" and index.meta["backend"] == "exact"
    with CatalogIndex.open(tmp_path / "b", backend="faiss") as index:  # this handle only
        assert index.backend == "faiss" and index.meta["backend"] == "exact"
