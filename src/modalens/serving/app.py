"""The FastAPI application: API routes, the web page, health and Prometheus metrics in one process."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .. import __version__
from ..index.store import IndexStoreError
from .api import router
from .service import Service
from .settings import ServeSettings

if TYPE_CHECKING:
    from ..models import DualEncoder

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: ServeSettings, model: DualEncoder | None = None) -> FastAPI:
    """Build the app; the model and index open at start-up (``model`` lets tests share one)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = Service(settings, model)
        await app.state.service.run(app.state.service.ensure_index)
        yield
        app.state.service.close()

    app = FastAPI(
        title="modalens",
        version=__version__,
        description="Fashion catalogue search by words and photos, zero-shot tagging, and product management.",
        lifespan=lifespan,
    )
    app.include_router(router)
    if settings.review_db:
        from ..matching.review_api import include_review

        include_review(app, settings.review_db)
    _add_metrics(app)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health")
    async def health(request: Request) -> dict:
        service: Service = request.app.state.service
        count = await service.run(lambda: len(service.engine.index))
        return {
            "status": "ok",
            "products": count,
            "model": settings.model,
            "queries": service.query_encoder.backend,
            "version": __version__,
        }

    return app


def _add_metrics(app: FastAPI) -> None:
    registry = CollectorRegistry()
    requests = Counter("modalens_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("modalens_request_seconds", "Request latency", ["route"], registry=registry)
    products = Gauge("modalens_indexed_products", "Products in the index", registry=registry)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        requests.labels(request.method, name, str(response.status_code)).inc()
        latency.labels(name).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        service: Service = request.app.state.service
        products.set(await service.run(lambda: len(service.engine.index)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(IndexStoreError)
    async def index_error(request: Request, exc: IndexStoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)
