"""Build (and resume building) a catalogue index from any batch embedder.

The builder knows nothing about models: it is handed ``embed_batch`` and a
``content_key`` function. Products whose id is already indexed under the same
content key are skipped, which is what makes a killed build resume where its
last committed batch ended, and what makes re-indexing an edited catalogue
cost only the edited products.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from modalens.catalog.schema import Product
from modalens.index.scenes import SceneInstances
from modalens.index.store import CatalogIndex
from modalens.progress import show_progress


class EmbedResult(NamedTuple):
    """What ``embed_batch`` returns: vectors of the products that worked, in ``ids`` order, plus failures."""

    vectors: np.ndarray
    ids: list[str]
    failures: list[tuple[str, str]]


@dataclass
class BuildReport:
    """What one build did; ``added + skipped_unchanged + failed == total``."""

    added: int
    skipped_unchanged: int
    failed: int
    total: int
    seconds: float
    pruned: int = 0
    what: str = "products"  # what was indexed: products, or scenes

    def __str__(self) -> str:
        text = (
            f"{self.added} added, {self.skipped_unchanged} unchanged, {self.failed} failed "
            f"of {self.total} {self.what} in {self.seconds:.1f}s"
        )
        return text + (f", {self.pruned} removed" if self.pruned else "")


def product_content_key(product: Product, salt: str = "") -> str:
    """A stable hash of everything a product record holds (plus ``salt``, e.g. an embedder config).

    A default for ``content_key``: any edit to the record changes the key, so
    the product is re-embedded. It does not see image *file* contents; callers
    that replace images in place should fold e.g. file sizes/mtimes into ``salt``.
    """
    text = json.dumps(product.to_dict(), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(f"{salt}\x00{text}".encode()).hexdigest()


def build_index(
    index: CatalogIndex,
    products: Sequence[Product],
    embed_batch: Callable[[list[Product]], EmbedResult],
    *,
    batch_size: int = 64,
    content_key: Callable[[Product], str],
    progress: bool | None = None,
    prune: bool = False,
    prepare: Callable[[list[Product], list[str]], None] | None = None,
) -> BuildReport:
    """Embed and store every product not already indexed under its current content key.

    Each batch is written by one ``index.add()`` (one transaction), so an
    interruption loses at most the batch in flight. Products the embedder
    reports as failed are recorded in the index (and retried by the next build).
    An exception from ``embed_batch`` propagates; committed batches stay.
    With ``prune``, indexed products absent from ``products`` are removed.
    ``prepare`` is called once with the products to embed and their content keys, before the first
    batch: a batch job (Ray) embeds them all there, and ``embed_batch`` reads its results.
    An index that searches with the ANN back-end is brought up to date at the end.
    """
    _check_batch_size(batch_size)
    started = time.perf_counter()
    keys = _content_keys(products, content_key)
    pruned = _prune(index, keys) if prune else 0
    existing = index.content_keys(None if len(products) > 10_000 else list(keys))
    todo = [p for p in products if existing.get(p.id) != keys[p.id]]
    if prepare is not None and todo:
        prepare(todo, [keys[p.id] for p in todo])
    added = failed = 0
    from tqdm.auto import tqdm  # here: a search never pays for importing it

    with tqdm(total=len(todo), disable=not show_progress(progress), unit="product", desc="indexing") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            n_added, n_failed = _index_batch(index, batch, embed_batch, keys)
            added, failed = added + n_added, failed + n_failed
            bar.update(len(batch))
            bar.set_postfix(failed=failed)
    index.sync()  # an ANN index is caught up and its cache file written now, not at the first search
    seconds = time.perf_counter() - started
    return BuildReport(added, len(products) - len(todo), failed, len(products), seconds, pruned)


def _check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _content_keys(products: Sequence[Product], content_key: Callable[[Product], str]) -> dict[str, str]:
    """id -> key; duplicate ids are an error since one would silently overwrite the other."""
    keys: dict[str, str] = {}
    duplicates: list[str] = []
    for product in products:
        if product.id in keys:
            duplicates.append(product.id)
        keys[product.id] = content_key(product)
    if duplicates:
        raise ValueError(f"catalogue has duplicate product ids, e.g. {sorted(set(duplicates))[:5]}")
    return keys


def _prune(index: CatalogIndex, keys: dict[str, str]) -> int:
    """Drop indexed products (and stale failure records) no longer in the catalogue."""
    stale = [i for i in index.ids() if i not in keys]
    stale_failures = [i for i, _ in index.failures() if i not in keys]
    return index.delete(stale + stale_failures)


def _index_batch(
    index: CatalogIndex,
    batch: list[Product],
    embed_batch: Callable[[list[Product]], EmbedResult],
    keys: dict[str, str],
) -> tuple[int, int]:
    """Embed one batch, write its vectors in one transaction, record its failures."""
    vectors, ids, failures = _check_result(batch, embed_batch(batch))
    by_id = {p.id: p for p in batch}
    index.add([by_id[i] for i in ids], vectors, [keys[i] for i in ids])
    index.record_failures(failures)
    return len(ids), len(failures)


def _check_result(batch: list[Product], result: EmbedResult) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Hold the embedder to its contract; a product it forgot to mention counts as failed."""
    vectors, ids, failures = result
    ids = [str(i) for i in ids]
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"embed_batch returned {len(ids)} ids but vectors of shape {vectors.shape}")
    return vectors, ids, _every_id_accounted(batch, ids, failures, "embed_batch", "embedder returned no vector and no reason")


def _every_id_accounted(batch: list[Product], ids: list[str], failures, embedder: str, unmentioned: str) -> list[tuple[str, str]]:
    """The embedder's failures, plus one (reason ``unmentioned``) for each item of ``batch`` it neither embedded nor
    failed; an id not in the batch, or named twice, is the embedder's bug (ValueError naming ``embedder``)."""
    failures = [(str(i), str(reason)) for i, reason in failures]
    mentioned = ids + [i for i, _ in failures]
    unknown = sorted(set(mentioned) - {p.id for p in batch})
    if unknown:
        raise ValueError(f"{embedder} returned ids that are not in the batch: {unknown[:5]}")
    if len(set(mentioned)) != len(mentioned):
        raise ValueError(f"{embedder} returned an id twice (or as both embedded and failed)")
    seen = set(mentioned)
    return failures + [(p.id, unmentioned) for p in batch if p.id not in seen]


class SceneEmbedResult(NamedTuple):
    """What a scene embedder returns: the instances kept of each scene that worked, in ``ids`` order, plus failures."""

    instances: list[SceneInstances]
    ids: list[str]
    failures: list[tuple[str, str]]


def build_scene_index(
    index: CatalogIndex,
    scenes: Sequence[Product],
    embed_batch: Callable[[list[Product]], SceneEmbedResult],
    *,
    batch_size: int = 64,
    content_key: Callable[[Product], str],
    progress: bool | None = None,
    prune: bool = False,
) -> BuildReport:
    """Store the instances of every scene photo not already stored under its current content key (as :func:`build_index`
    does for products: one transaction a batch, failures recorded and retried next time, a re-run of unchanged scenes
    writes nothing; ``prune`` removes stored scenes and failure records absent from ``scenes``)."""
    _check_batch_size(batch_size)
    started = time.perf_counter()
    keys = _content_keys(scenes, content_key)
    pruned = _prune_scenes(index, keys) if prune else 0
    existing = index.scene_content_keys(None if len(scenes) > 10_000 else list(keys))
    todo = [s for s in scenes if existing.get(s.id) != keys[s.id]]
    added = failed = 0
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), disable=not show_progress(progress), unit="scene", desc="indexing scenes") as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            instances, ids, failures = _check_scene_result(batch, embed_batch(batch))
            by_id = {s.id: s for s in batch}
            index.add_scenes([by_id[i] for i in ids], instances, [keys[i] for i in ids])
            index.record_scene_failures(failures)
            added, failed = added + len(ids), failed + len(failures)
            bar.update(len(batch))
    return BuildReport(added, len(scenes) - len(todo), failed, len(scenes), time.perf_counter() - started, pruned, what="scenes")


def _prune_scenes(index: CatalogIndex, keys: dict[str, str]) -> int:
    """Drop stored scenes (and stale failure records) no longer in the scene list; how many scenes were stored."""
    return index.delete_scenes([i for i in index.scene_ids() if i not in keys] + [i for i, _ in index.scene_failures() if i not in keys])


def _check_scene_result(batch: list[Product], result: SceneEmbedResult) -> SceneEmbedResult:
    """As :func:`_check_result`: every scene of the batch stored or failed, once, and nothing else."""
    instances, ids = list(result.instances), [str(i) for i in result.ids]
    if len(instances) != len(ids):
        raise ValueError(f"the scene embedder returned {len(ids)} ids but {len(instances)} instance sets")
    failures = _every_id_accounted(batch, ids, result.failures, "the scene embedder", "embedder returned no instances and no reason")
    return SceneEmbedResult(instances, ids, failures)
