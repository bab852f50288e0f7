"""Readers for the published layouts of open fashion datasets, each giving the usual ``Catalog``.

Every reader is ``read_<name>(root, split=None, *, limit=None) -> Catalog``:
``root`` is the folder the dataset was unpacked into (the layout each expects
is in its module docstring and in docs/datasets.md), ``split`` picks one split
(None: all), ``limit`` stops after that many good products.  Images are
absolute paths of local files; records that cannot be used are
``Catalog.errors`` entries, never silent drops.  Nothing here downloads
anything: users fetch each dataset under its own terms.

``read_catalog("NAME=ROOT[:SPLIT]")`` (e.g. ``fashion200k=/data/fashion200k:train``)
reaches the same readers through :func:`read_dataset`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ..schema import Catalog, CatalogError
from ._common import RecordList
from .atlas import read_atlas
from .deepfashion import read_deepfashion_inshop, read_deepfashion_multimodal
from .fashion200k import read_fashion200k
from .fashiongen import read_fashion_gen
from .fashioniq import FashionIQTriplet, read_fashioniq, read_fashioniq_triplets
from .imaterialist import read_imaterialist, read_imaterialist_segmentation
from .polyvore import PolyvoreOutfit, read_polyvore, read_polyvore_outfits

__all__ = [
    "DATASETS",
    "FashionIQTriplet",
    "PolyvoreOutfit",
    "RecordList",
    "dataset_names",
    "parse_dataset_spec",
    "read_atlas",
    "read_dataset",
    "read_deepfashion_inshop",
    "read_deepfashion_multimodal",
    "read_fashion200k",
    "read_fashion_gen",
    "read_fashioniq",
    "read_fashioniq_triplets",
    "read_imaterialist",
    "read_imaterialist_segmentation",
    "read_polyvore",
    "read_polyvore_outfits",
]

Reader = Callable[..., Catalog]

#: Dataset name -> reader; the names ``read_catalog("NAME=ROOT[:SPLIT]")`` accepts.
DATASETS: dict[str, Reader] = {
    "fashioniq": read_fashioniq,
    "fashion200k": read_fashion200k,
    "fashion-gen": read_fashion_gen,
    "imaterialist": read_imaterialist,
    "imaterialist-seg": read_imaterialist_segmentation,
    "deepfashion-inshop": read_deepfashion_inshop,
    "deepfashion-multimodal": read_deepfashion_multimodal,
    "polyvore": read_polyvore,
    "atlas": read_atlas,
}
_ALIASES = {
    "fashion-iq": "fashioniq",
    "fashion-200k": "fashion200k",
    "fashiongen": "fashion-gen",
    "imaterialist-2018": "imaterialist",
    "imat": "imaterialist",
    "imaterialist-2019": "imaterialist-seg",
    "imaterialist-2020": "imaterialist-seg",
    "inshop": "deepfashion-inshop",
    "deepfashion": "deepfashion-inshop",
    "multimodal": "deepfashion-multimodal",
    "polyvore-outfits": "polyvore",
}


def canonical_name(name: str) -> str | None:
    """The registry key for a dataset name ('Fashion_Gen' -> 'fashion-gen'), or None if unknown."""
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    return key if key in DATASETS else None


def dataset_names() -> list[str]:
    return list(DATASETS)


def read_dataset(name: str, root: str | Path, split: str | None = None, *, limit: int | None = None) -> Catalog:
    """Read dataset ``name`` (a ``DATASETS`` key or alias) from ``root``, one split or all."""
    key = canonical_name(name)
    if key is None:
        raise CatalogError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key](root, split, limit=limit)


def parse_dataset_spec(text: str) -> tuple[str, str, str | None] | None:
    """``NAME=ROOT[:SPLIT]`` as (registry name, root, split); None when ``text`` is not such a spec.

    A ROOT that exists as written is taken whole (so a path containing ':' or
    '=' still works); otherwise the part after the last ':' is the split.  An
    unknown NAME that looks like a name is an error listing the known ones.
    """
    name, sep, rest = str(text).partition("=")
    if not sep or Path(text).exists():
        return None
    key = canonical_name(name)
    if key is None:
        looks_like_table = Path(text).suffix.lower() in {".csv", ".tsv", ".jsonl", ".ndjson"}
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name.strip()) and not looks_like_table:
            raise CatalogError(f"{name!r} is not a known dataset; NAME=ROOT[:SPLIT] takes one of: {', '.join(DATASETS)}")
        return None
    root, split = rest.strip(), None
    if not Path(root).expanduser().exists():
        head, colon, tail = root.rpartition(":")
        if colon and head and tail and "/" not in tail and "\\" not in tail:
            root, split = head, tail
    if not root:
        raise CatalogError(f"{text}: NAME=ROOT[:SPLIT] needs the dataset folder after '='")
    return key, os.path.expanduser(root), split
