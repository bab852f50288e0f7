"""Scene photos beside the products: instances stored per scene, best-instance search, re-run safety, product rows untouched."""

from __future__ import annotations

import numpy as np
import pytest
from index_helpers import DIM, make_products

from modalens.catalog.schema import Product
from modalens.errors import InvalidInputError
from modalens.index import CatalogIndex, SceneInstances, build_scene_index
from modalens.index.build import SceneEmbedResult


def scene(i: int) -> Product:
    return Product(id=f"scene-{i:03d}", images=[f"scenes/{i}.png"], title=f"Lookbook page {i}")


def instances(rng: np.random.Generator, m: int) -> SceneInstances:
    attention = rng.random((m, 49))
    return SceneInstances(np.arange(m), rng.normal(size=(m, DIM)), rng.random(m), attention / attention.sum(1, keepdims=True))


def fill_scenes(index: CatalogIndex, n: int, seed: int = 0) -> tuple[list[Product], list[SceneInstances]]:
    rng = np.random.default_rng(seed)
    scenes = [scene(i) for i in range(n)]
    found = [instances(rng, 1 + i % 4) for i in range(n)]  # 1 to 4 instances: ragged, as the objectness cut leaves them
    index.add_scenes(scenes, found, ["k"] * n)
    return scenes, found


def test_a_scene_scores_by_its_best_instance_checked_against_brute_force(index):
    scenes, found = fill_scenes(index, 60)
    queries = np.random.default_rng(1).normal(size=(8, DIM))
    results = index.search_scenes(queries, k=5)
    for query, hits in zip(queries, results):
        q = query / np.linalg.norm(query)
        best = [max((v / np.linalg.norm(v)) @ q for v in f.vectors) for f in found]
        expected = sorted(range(len(scenes)), key=lambda s: (-best[s], s))[:5]
        assert [h.id for h in hits] == [scenes[s].id for s in expected]
        assert [h.score for h in hits] == pytest.approx([best[s] for s in expected], abs=1e-5)
        for hit in hits:  # the hit names the instance that matched, with its objectness and attention
            f = found[scenes.index(hit.scene)]
            j = int(np.flatnonzero(f.queries == hit.query)[0])
            assert (f.vectors[j] / np.linalg.norm(f.vectors[j])) @ q == pytest.approx(hit.score, abs=1e-5)
            assert hit.objectness == pytest.approx(f.objectness[j], abs=1e-6)
            assert hit.attention == pytest.approx(list(f.attention[j]), abs=1e-6)


def test_scenes_leave_products_alone_and_products_leave_scenes_alone(index):
    products = make_products(10)
    index.add(products, np.random.default_rng(0).normal(size=(10, DIM)), ["k"] * 10)
    scenes, found = fill_scenes(index, 5)
    assert len(index) == 10 and index.scene_count() == 5 and index.ids() == [p.id for p in products]
    hits = index.search(found[0].vectors[0], k=20)[0]
    assert {h.id for h in hits} == {p.id for p in products}  # product search never returns a scene
    assert index.search_scenes(found[0].vectors[0], k=1)[0][0].id == scenes[0].id
    assert index.delete([products[0].id]) == 1 and index.scene_count() == 5
    assert index.delete_scenes([scenes[0].id, "no-such-scene"]) == 1 and len(index) == 9
    assert index.scene_ids() == [s.id for s in scenes[1:]]
    with pytest.raises(KeyError, match="scene-000"):
        index.get_scene(scenes[0].id)


def test_re_adding_a_scene_replaces_its_instances_and_another_reader_sees_it(index, tmp_path):
    scenes, found = fill_scenes(index, 3)
    reader = CatalogIndex.open(index.path)
    try:
        first = reader.search_scenes(found[1].vectors[0], k=1)[0][0]
        assert first.id == scenes[1].id and first.score == pytest.approx(1.0, abs=1e-5)
        fresh = instances(np.random.default_rng(7), 2)
        index.add_scenes([scenes[1]], [fresh], ["k2"])
        assert index.scene_instances(scenes[1].id).vectors.shape == (2, DIM)
        assert index.scene_ids() == [s.id for s in scenes]  # a replaced scene keeps its place
        after = reader.search_scenes(found[1].vectors[0], k=3)[0]  # the reader's matrix reloads
        assert scenes[1].id not in [h.id for h in after if h.score > 0.999]
        assert reader.search_scenes(fresh.vectors[1], k=1)[0][0].id == scenes[1].id
    finally:
        reader.close()


def test_bad_scene_batches_write_nothing(index):
    rng = np.random.default_rng(0)
    good = instances(rng, 2)
    with pytest.raises(ValueError, match="equal"):
        index.add_scenes([scene(0)], [good, good], ["k"])
    with pytest.raises(ValueError, match="NaN"):
        index.add_scenes([scene(0), scene(1)], [good, SceneInstances(np.arange(1), np.full((1, DIM), np.nan), np.ones(1), np.ones((1, 49)))], ["k", "k"])
    with pytest.raises(ValueError, match="instances must be"):
        index.add_scenes([scene(0)], [SceneInstances(np.arange(1), np.ones((1, DIM + 1)), np.ones(1), np.ones((1, 49)))], ["k"])
    with pytest.raises(ValueError, match="duplicate scene ids"):
        index.add_scenes([scene(0), scene(0)], [good, good], ["k", "k"])
    twice = SceneInstances(np.array([3, 3]), good.vectors, good.objectness, good.attention)  # one query number twice
    with pytest.raises(ValueError, match="its own decoder query number"):
        index.add_scenes([scene(0), scene(1)], [good, twice], ["k", "k"])
    assert index.scene_count() == 0


def test_an_index_without_scenes_says_how_to_add_them(index):
    assert index.scene_count() == 0 and index.scene_ids() == [] and index.scene_failures() == []
    with pytest.raises(InvalidInputError, match="--scenes"):
        index.search_scenes(np.ones(DIM), k=3)


def test_building_scenes_twice_embeds_each_once_and_records_failures(index):
    scenes = [scene(i) for i in range(7)]
    calls: list[str] = []

    def embed(batch: list[Product]) -> SceneEmbedResult:
        calls.extend(s.id for s in batch)
        ok = [s for s in batch if s.id != "scene-003"]
        rng = np.random.default_rng(len(calls))
        bad = [(s.id, "cannot identify image file") for s in batch if s.id == "scene-003"]
        return SceneEmbedResult([instances(rng, 2) for _ in ok], [s.id for s in ok], bad)

    first = build_scene_index(index, scenes, embed, batch_size=3, content_key=lambda s: s.title)
    assert (first.added, first.failed, first.skipped_unchanged) == (6, 1, 0) and "scenes" in str(first)
    assert index.scene_failures() == [("scene-003", "cannot identify image file")]
    calls.clear()
    second = build_scene_index(index, scenes, embed, batch_size=3, content_key=lambda s: s.title)
    assert (second.added, second.skipped_unchanged) == (0, 6) and calls == ["scene-003"]  # only the failed one is retried


def test_a_scene_embedder_that_forgets_a_scene_or_invents_one_is_held_to_its_contract(index):
    scenes = [scene(i) for i in range(3)]
    rng = np.random.default_rng(0)
    forgetful = build_scene_index(index, scenes, lambda batch: SceneEmbedResult([instances(rng, 1)], [batch[0].id], []), content_key=lambda s: s.id)
    assert (forgetful.added, forgetful.failed) == (1, 2) and len(index.scene_failures()) == 2
    with pytest.raises(ValueError, match="not in the batch"):
        build_scene_index(index, scenes, lambda batch: SceneEmbedResult([instances(rng, 1)], ["elsewhere"], []), content_key=lambda s: s.id)


def test_pruning_drops_the_scenes_and_failure_records_no_longer_listed(index):
    scenes = [scene(i) for i in range(5)]
    rng = np.random.default_rng(0)

    def embed(batch: list[Product]) -> SceneEmbedResult:
        ok = [s for s in batch if s.id != "scene-004"]
        return SceneEmbedResult([instances(rng, 2) for _ in ok], [s.id for s in ok], [("scene-004", "unreadable")] if len(ok) < len(batch) else [])

    build_scene_index(index, scenes, embed, content_key=lambda s: s.title)
    assert index.scene_count() == 4 and [i for i, _ in index.scene_failures()] == ["scene-004"]
    kept = build_scene_index(index, scenes[:2], embed, content_key=lambda s: s.title)  # without prune: nothing removed
    assert (kept.pruned, index.scene_count()) == (0, 4)
    pruned = build_scene_index(index, scenes[:2], embed, content_key=lambda s: s.title, prune=True)
    assert (pruned.pruned, pruned.skipped_unchanged) == (2, 2) and "2 removed" in str(pruned)
    assert index.scene_ids() == ["scene-000", "scene-001"] and index.scene_failures() == []
