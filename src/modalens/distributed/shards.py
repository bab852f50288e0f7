"""Embedding shards: a catalogue's vectors, records and failures as Parquet files, named by what they hold.

A batch job (``modalens index --executor ray``) splits the products to embed
into shards of ``SHARD_SIZE`` in catalogue order and writes each as one Parquet
file, atomically (a temporary file, fsync, rename). A shard's name is a digest
of its products' content keys (which fold in the model identity, the record
and the photo files' size and mtime), so a re-run after a kill finds the shards
already written and embeds only the missing ones, and a changed catalogue
never reuses a stale shard. Reading them back needs pyarrow only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modalens.catalog.schema import Product

SHARD_SIZE = 1024
SHARD_FORMAT = 1


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its file, and the products (with their content keys) it holds."""

    path: Path
    products: list[Product]
    keys: list[str]


def plan_shards(folder: Path, products: Sequence[Product], keys: Sequence[str], size: int = SHARD_SIZE) -> list[ShardPlan]:
    """The products cut into shards of ``size`` in order, each named by the digest of its content keys."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"shard size must be a positive integer, got {size!r}")
    plans = []
    for start in range(0, len(products), size):
        chunk_keys = list(keys[start : start + size])
        digest = hashlib.sha256(f"{SHARD_FORMAT}\n".encode() + "\n".join(chunk_keys).encode()).hexdigest()[:24]
        plans.append(ShardPlan(Path(folder) / f"shard-{digest}.parquet", list(products[start : start + size]), chunk_keys))
    return plans


def write_shard(plan: ShardPlan, vectors: np.ndarray, ids: Sequence[str], failures: Sequence[tuple[str, str]]) -> None:
    """One shard file, whole or not at all: a row per product, its vector (or its failure reason) and its record."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_id = {pid: vectors[i] for i, pid in enumerate(ids)}
    reasons = dict(failures)
    dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    table = pa.table(
        {
            "id": [p.id for p in plan.products],
            "content_key": plan.keys,
            "product": [json.dumps(p.to_dict(), ensure_ascii=False, default=str) for p in plan.products],
            "vector": pa.array(
                [by_id[p.id].astype(np.float32).tolist() if p.id in by_id else None for p in plan.products],
                type=pa.list_(pa.float32(), dim) if dim else pa.list_(pa.float32()),
            ),
            "failure": [None if p.id in by_id else reasons.get(p.id, "embedder returned no vector") for p in plan.products],
        }
    )
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.path.with_name(f".{plan.path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, plan.path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_shard(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(id -> float32 vector, id -> failure reason) of one shard file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["id", "vector", "failure"])
    vectors, failures = {}, {}
    for pid, vector, reason in zip(table["id"].to_pylist(), table["vector"].to_pylist(), table["failure"].to_pylist()):
        if vector is None:
            failures[pid] = reason
        else:
            vectors[pid] = np.asarray(vector, dtype=np.float32)
    return vectors, failures


__all__ = ["SHARD_SIZE", "ShardPlan", "plan_shards", "read_shard", "write_shard"]
