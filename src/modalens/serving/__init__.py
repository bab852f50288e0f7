"""The search service: REST API (FastAPI, OpenAPI at /docs), the web page, health and metrics."""

from .app import create_app
from .settings import ServeSettings

__all__ = ["create_app", "ServeSettings"]
