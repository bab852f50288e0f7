"""The search service: REST API (FastAPI, OpenAPI at /docs), the web page, health and metrics; the review server.

    app.py            the applications, assembled from the routers (create_app, create_review_app)
    routers/          search, products, ingest, review
    dependencies.py   the key policy, the server's parts, validated input
    middleware.py     request-body limits before parsing
    validation.py     checks and limits shared with the CLI (filters, ids, JSON, ingest roots, hit JSON)
    service.py        the model, the query thread and ingest jobs
    settings.py       ServeSettings

Names are imported lazily, so ``serving.validation`` costs the CLI no FastAPI import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app, create_review_app
    from .settings import ServeSettings

__all__ = ["create_app", "create_review_app", "ServeSettings"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "create_review_app"):
        from . import app

        return getattr(app, name)
    if name == "ServeSettings":
        from .settings import ServeSettings

        return ServeSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
