"""Batch embedding on Ray Data: photos decoded and encoded by a pool of actors, written as Parquet shards.

``modalens index CATALOGUE --executor ray [--address ADDR]`` runs the same
embedding as the embedded path (each actor holds the model through
:func:`modalens.models.load` and embeds through its
:class:`~modalens.embedding.CachedEncoder`: the same ONNX towers, preprocessing,
feature cache and heads), one shard of products per task. Each actor writes
its shard itself (:mod:`modalens.distributed.shards`), so a shard is durable
the moment it is done: a job killed at any point and run again embeds only the
shards that are missing. The driver then loads the shards into the chosen
store through :func:`~modalens.index.build.build_index` (one transaction per
batch, resumable as any build), so the store ends with exactly one vector per
product.

Photos must be readable by every worker (a local or shared file system). Ray
is an optional extra (``modalens[ray]``) imported only here.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalens.catalog.schema import Product
from modalens.errors import InvalidInputError
from modalens.distributed.shards import SHARD_SIZE, ShardPlan, plan_shards, read_shard, write_shard
from modalens.index.build import EmbedResult

#: Environment variables the driver hands to its workers (the caches, the back-end choice, the source tree).
FORWARDED_ENV = ("PYTHONPATH",)


@dataclass
class RayJobReport:
    """What one Ray job did: shards planned, written now, found from an earlier run; its workers and time."""

    shards: int
    written: int
    reused: int
    workers: int
    seconds: float


class ShardEmbedder:
    """The Ray actor: loads the model once, then embeds and writes one shard per call."""

    def __init__(self, model: str, identity: str, threads: int) -> None:
        os.environ["MODALENS_THREADS"] = str(threads)  # ONNX Runtime sessions: this actor's share of the cores
        import torch

        from modalens.embedding import CachedEncoder
        from modalens.models import load

        torch.set_num_threads(threads)
        handle = load(model)
        if handle.identity != identity:
            raise RuntimeError(
                f"worker loaded {model!r} as {handle.identity!r}, the driver has {identity!r}: install the same model "
                "(and modalens) on every node"
            )
        self.encoder = CachedEncoder(handle.model, progress=False)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        written = []
        for path, products, keys in zip(batch["path"], batch["products"], batch["keys"]):
            plan = ShardPlan(Path(path), [Product.from_dict(d) for d in json.loads(products)], json.loads(keys))
            if not plan.path.exists():  # a retried task whose first attempt finished
                vectors, failures = self.encoder.image_embeddings(plan.products)
                ok = [i for i in range(len(plan.products)) if i not in failures]
                ids = [plan.products[i].id for i in ok]
                write_shard(plan, np.asarray(vectors)[ok], ids, [(plan.products[i].id, r) for i, r in failures.items()])
            written.append(str(path))
        return {"path": written}


def run_ray_job(
    plans: Sequence[ShardPlan],
    *,
    model: str,
    identity: str,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    progress: bool = False,
) -> RayJobReport:
    """Embed the shards whose files are missing on a Ray cluster (``address``; None: a local one, or the one running)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise InvalidInputError("--executor ray needs Ray Data: pip install 'modalens[ray]'") from None

    started = time.perf_counter()
    missing = [plan for plan in plans if not plan.path.exists()]
    if not missing:
        return RayJobReport(len(plans), 0, len(plans), 0, time.perf_counter() - started)
    own_cluster = not ray.is_initialized()
    if own_cluster:
        ray.init(address=address, include_dashboard=False, log_to_driver=progress, configure_logging=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = progress
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = max(1, min(workers or cpus // threads, len(missing)))
        env = {name: value for name, value in os.environ.items() if name.startswith("MODALENS_") or name in FORWARDED_ENV}
        items = [
            {
                "path": str(plan.path),
                "products": json.dumps([p.to_dict() for p in plan.products], default=str),
                "keys": json.dumps(plan.keys),
            }
            for plan in missing
        ]
        shards = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardEmbedder,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=threads,
            fn_constructor_kwargs={"model": model, "identity": identity, "threads": threads},
            runtime_env={"env_vars": {**env, "MODALENS_DECODE_WORKERS": "0", "OMP_NUM_THREADS": str(threads)}},
        )
        done = {row["path"] for row in shards.iter_rows()}
    finally:
        if own_cluster:
            ray.shutdown()
    lost = [str(plan.path) for plan in missing if str(plan.path) not in done or not plan.path.exists()]
    if lost:
        raise RuntimeError(f"the Ray job ended without writing {len(lost)} shards, e.g. {lost[0]}; run it again")
    return RayJobReport(len(plans), len(missing), len(plans) - len(missing), size, time.perf_counter() - started)


class ShardedEmbedder:
    """``embed_batch`` for :func:`build_index`, answered from shards a Ray job wrote (run by :meth:`prepare`)."""

    def __init__(
        self,
        folder: Path,
        *,
        model: str,
        identity: str,
        address: str | None = None,
        workers: int | None = None,
        threads: int = 1,
        shard_size: int = SHARD_SIZE,
        progress: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.options = {"model": model, "identity": identity, "address": address, "workers": workers, "threads": threads}
        self.shard_size = shard_size
        self.progress = progress
        self.report: RayJobReport | None = None
        self._shard_of: dict[str, Path] = {}
        self._loaded: OrderedDict[Path, tuple[dict[str, np.ndarray], dict[str, str]]] = OrderedDict()

    def prepare(self, products: Sequence[Product], keys: Sequence[str]) -> None:
        """Plan the shards for the products to embed and have Ray write the missing ones."""
        plans = plan_shards(self.folder, products, keys, self.shard_size)
        self._shard_of = {p.id: plan.path for plan in plans for p in plan.products}
        self.report = run_ray_job(plans, progress=self.progress, **self.options)

    def __call__(self, products: list[Product]) -> EmbedResult:
        vectors, ids, failures = [], [], []
        for product in products:
            found, failed = self._shard(self._shard_of[product.id])
            if product.id in found:
                vectors.append(found[product.id])
                ids.append(product.id)
            else:
                failures.append((product.id, failed.get(product.id, "not in its shard")))
        dim = vectors[0].shape[0] if vectors else 0
        return EmbedResult(np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32), ids, failures)

    def _shard(self, path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """A shard's contents; the last two are kept (a build batch spans at most two shards)."""
        if path not in self._loaded:
            self._loaded[path] = read_shard(path)
            if len(self._loaded) > 2:
                self._loaded.popitem(last=False)
        return self._loaded[path]


__all__ = ["RayJobReport", "ShardEmbedder", "ShardedEmbedder", "run_ray_job"]
