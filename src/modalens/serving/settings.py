"""Server settings: where the index is, which model, who may read and write, what may be ingested, and the byte limits.

The fixed limits of the API's schema (k, offsets, id length, JSON depth...) live in
:mod:`modalens.serving.validation`, the one place the API and the CLI read them from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..models import DEFAULT_MODEL
from ..query_encoder import onnx_dir_from_env
from .validation import DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_UPLOAD_BYTES, ingest_roots_from_env

#: Multipart bodies may exceed the upload limit by this much (field names, boundaries, the product JSON).
MULTIPART_OVERHEAD_BYTES = 1 * 2**20


@dataclass
class ServeSettings:
    #: The index folder (None only for the standalone review server, which has no index).
    index_dir: Path | None = None
    #: A model name or saved folder (``modalens.models.load``).
    model: str = DEFAULT_MODEL
    #: Keys accepted in the ``X-API-Key`` header. Every write needs one; with none configured, writes are refused.
    api_keys: frozenset[str] = field(default_factory=frozenset)
    #: When True, read endpoints (search, tag, product pages, review stats and photos) need a key too:
    #: an API key or a reviewer key.
    read_requires_key: bool = False
    #: Largest accepted photo upload; a multipart body may be MULTIPART_OVERHEAD_BYTES larger.
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    #: Largest accepted body that is not multipart (JSON requests).
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    #: Folders ``POST /api/ingest`` may read catalogues (and their photos) from; none: ingest is refused.
    ingest_roots: tuple[Path, ...] = ()
    #: A matching review queue (SQLite file or postgresql:// URL) to serve at /review/ beside the search page.
    review_db: str | None = None
    #: How long a pair stays leased to a reviewer who does not answer.
    review_lease_seconds: float = 300.0
    #: An ONNX export folder (``modalens export``): search queries are answered from it without importing
    #: torch; tagging and writes still load the PyTorch model, on first use. See docs/onnx.md.
    onnx_dir: Path | None = None
    #: Where the index lives, as ``--store`` names it (``modalens.index.stores``): None for the SQLite file in
    #: ``index_dir``, ``milvus:URI[#collection]`` for Milvus (a local file: Milvus Lite; ``http://``: a server).
    store: str | None = None
    #: Where ``PUT /api/products`` keeps uploaded photos (the product record names the file); None: ``index_dir/uploads``.
    #: Replicas that share one Milvus store need a folder every one of them mounts at the same path, or only the
    #: replica that took the upload can serve its photo.
    upload_dir: Path | None = None

    @property
    def max_multipart_bytes(self) -> int:
        return self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @property
    def uploads_folder(self) -> Path:
        """The folder uploaded product photos are written to."""
        if self.upload_dir is not None:
            return Path(self.upload_dir)
        if self.index_dir is None:
            raise ValueError("uploaded photos need an upload folder or an index folder")
        return Path(self.index_dir) / "uploads"

    @classmethod
    def from_env(cls, index_dir: Path | None, model: str = DEFAULT_MODEL, **overrides) -> "ServeSettings":
        """``MODALENS_API_KEYS`` (comma-separated) and ``MODALENS_READ_REQUIRES_KEY=1`` configure access;
        ``MODALENS_INGEST_ROOTS`` (``:``-separated folders) what ``/api/ingest`` may read;
        ``MODALENS_ONNX_DIR`` names an export to answer queries from; ``MODALENS_UPLOAD_DIR`` where uploaded photos go."""
        keys = frozenset(k.strip() for k in os.environ.get("MODALENS_API_KEYS", "").split(",") if k.strip())
        read_key = os.environ.get("MODALENS_READ_REQUIRES_KEY", "").strip().lower() in ("1", "true", "yes")
        settings = cls(
            None if index_dir is None else Path(index_dir),
            model,
            api_keys=keys,
            read_requires_key=read_key,
            ingest_roots=ingest_roots_from_env(),
            review_db=os.environ.get("MODALENS_REVIEW_DB") or None,
            onnx_dir=onnx_dir_from_env(),
            upload_dir=Path(os.environ["MODALENS_UPLOAD_DIR"]) if os.environ.get("MODALENS_UPLOAD_DIR") else None,
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        return settings
