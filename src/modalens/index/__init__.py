"""The on-disk catalogue index: one SQLite file of products, vectors and failures, searched exactly.

``CatalogIndex`` stores and searches; ``build_index`` fills it from any batch
embedder and resumes after an interruption.
"""

from modalens.index.build import BuildReport, EmbedResult, build_index, product_content_key
from modalens.index.search import ExactSearch
from modalens.index.store import CatalogIndex, Hit, IndexMismatchError, IndexNotFoundError, IndexStoreError

__all__ = [
    "BuildReport",
    "CatalogIndex",
    "EmbedResult",
    "ExactSearch",
    "Hit",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexStoreError",
    "build_index",
    "product_content_key",
]
