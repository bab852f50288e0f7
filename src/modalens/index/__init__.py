"""The on-disk catalogue index: one SQLite file of products, vectors and failures.

``CatalogIndex`` stores and searches (exact, or faiss IVF-Flat from
``ANN_THRESHOLD`` vectors on when ``modalens[ann]`` is installed; BM25 keyword
and hybrid ranking); ``build_index`` fills it from any batch embedder and
resumes after an interruption.
"""

from modalens.index.ann import AnnCacheError, FaissIVFSearch, faiss_available
from modalens.index.build import (
    BuildReport,
    EmbedResult,
    build_index,
    build_scene_index,
    product_content_key,
)
from modalens.index.search import ExactSearch
from modalens.index.store import (
    ANN_THRESHOLD,
    BACKENDS,
    CatalogIndex,
    Hit,
    IndexMismatchError,
    IndexNotFoundError,
    IndexStoreError,
    SceneHit,
    SceneInstances,
)

__all__ = [
    "ANN_THRESHOLD",
    "BACKENDS",
    "AnnCacheError",
    "BuildReport",
    "CatalogIndex",
    "EmbedResult",
    "ExactSearch",
    "FaissIVFSearch",
    "Hit",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexStoreError",
    "SceneHit",
    "SceneInstances",
    "build_index",
    "build_scene_index",
    "faiss_available",
    "product_content_key",
]
