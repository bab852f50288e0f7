"""Server settings: where the index is, which model, who may write, and the limits on input."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..query_encoder import onnx_dir_from_env


@dataclass
class ServeSettings:
    index_dir: Path
    model: str = "modalens-lite"
    #: Keys accepted in the ``X-API-Key`` header. Every write needs one; with none configured, writes are refused.
    api_keys: frozenset[str] = field(default_factory=frozenset)
    #: When True, read endpoints (search, tag, product pages) need a key too.
    read_requires_key: bool = False
    max_upload_bytes: int = 10 * 2**20
    max_image_pixels: int = 40_000_000
    max_k: int = 100
    max_offset: int = 1000
    max_labels: int = 200
    #: A matching review queue (SQLite file) to serve at /review/ beside the search page.
    review_db: str | None = None
    #: An ONNX export folder (``modalens export``): search queries are answered from it without importing
    #: torch; tagging and writes still load the PyTorch model, on first use. See docs/onnx.md.
    onnx_dir: Path | None = None

    @classmethod
    def from_env(cls, index_dir: Path, model: str = "modalens-lite", **overrides) -> "ServeSettings":
        """``MODALENS_API_KEYS`` (comma-separated) and ``MODALENS_READ_REQUIRES_KEY=1`` configure access;
        ``MODALENS_ONNX_DIR`` names an export to answer queries from."""
        keys = frozenset(k.strip() for k in os.environ.get("MODALENS_API_KEYS", "").split(",") if k.strip())
        read_key = os.environ.get("MODALENS_READ_REQUIRES_KEY", "") in ("1", "true", "yes")
        settings = cls(
            Path(index_dir),
            model,
            api_keys=keys,
            read_requires_key=read_key,
            review_db=os.environ.get("MODALENS_REVIEW_DB"),
            onnx_dir=onnx_dir_from_env(),
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        return settings
