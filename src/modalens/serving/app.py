"""The FastAPI applications, assembled from the routers: the search server, and the standalone review server.

Both share one base (:func:`_base_app`): the request-body limit before any parsing,
and the one mapping of :class:`~modalens.errors.ModalensError` to HTTP. Every
router is included with the read-key dependency, so one key policy covers the
search API and the review API alike (``serving.dependencies``).
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .. import __version__
from ..errors import ModalensError
from ..index.store import IndexStoreError
from .dependencies import require_read
from .middleware import BodyLimit
from .routers import embeddings, ingest, products, review, scenes, search
from .service import Service
from .settings import ServeSettings

if TYPE_CHECKING:
    from ..models import ModelHandle

STATIC_DIR = Path(__file__).parent / "static"
READ = [Depends(require_read)]


def create_app(settings: ServeSettings, handle: ModelHandle | None = None) -> FastAPI:
    """Build the search server; the model and index open at start-up (``handle`` shares a model already loaded)."""
    if settings.index_dir is None:
        raise ValueError("the search server needs an index folder")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = Service(settings, handle)
        await app.state.service.run(app.state.service.ensure_index)
        try:
            yield
        finally:
            app.state.service.close()
            _close_review(app)

    app = _base_app(
        settings,
        title="modalens",
        description="Fashion catalogue search by words and photos, zero-shot tagging, and product management.",
        lifespan=lifespan,
    )
    for router in (search.router, scenes.router, products.router, ingest.router, embeddings.router):
        app.include_router(router, dependencies=READ)
    if settings.review_db:
        _include_review(app, settings)
    _add_metrics(app)
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
            "queries": service.handle.query_encoder.backend,
            "version": __version__,
        }

    return app


def create_review_app(db: str | Path, *, lease_seconds: float = 300.0, settings: ServeSettings | None = None) -> FastAPI:
    """A standalone review server for queue ``db``; ``/`` redirects to the page. Keys and limits as in ``settings``
    (default: from the environment, as ``modalens serve`` reads it)."""
    settings = settings or ServeSettings.from_env(None)
    settings.review_db, settings.review_lease_seconds = str(db), lease_seconds

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            _close_review(app)

    app = _base_app(settings, title="modalens review", lifespan=lifespan)
    _include_review(app, settings)

    @app.get("/", include_in_schema=False)
    def root() -> HTMLResponse:
        return HTMLResponse('<meta http-equiv="refresh" content="0; url=/review/">', status_code=200)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    return app


def _base_app(settings: ServeSettings, **kwargs: Any) -> FastAPI:
    app = FastAPI(version=__version__, docs_url=None, redoc_url=None, **kwargs)
    app.state.settings = settings
    _add_offline_docs(app)
    app.add_middleware(BodyLimit, max_json_bytes=settings.max_json_bytes, max_multipart_bytes=settings.max_multipart_bytes)
    _add_error_handlers(app)
    return app


#: Where the Swagger UI and ReDoc files are served from (they come from the fastapi-offline package).
DOCS_ASSETS_URL = "/static-docs"
#: The docs pages may load nothing from elsewhere: ReDoc's sidebar names a logo on a CDN (hidden when it fails),
#: which this policy stops before it becomes a request that waits on an offline network.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def _add_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` served with their JavaScript and CSS from this server.

    FastAPI's own pages load those files from a CDN, so offline they are blank. The files come
    from the ``fastapi-offline`` package (a dependency: nothing copied by hand, updated by pip).
    """
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — API docs",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        ))

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _local_only(get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — API reference",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        ))


def _local_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def _include_review(app: FastAPI, settings: ServeSettings) -> None:
    """The review page (``/review/``, no key: it holds no data) and its API (``/review/api/...``, the read policy,
    decisions as the key's reviewer), backed by ``settings.review_db``."""
    app.state.review = review.ReviewState(settings.review_db, settings.review_lease_seconds)
    app.include_router(review.pages)
    app.include_router(review.api, dependencies=READ)


def _close_review(app: FastAPI) -> None:
    state = getattr(app.state, "review", None)
    if state is not None:
        state.close()


def _add_metrics(app: FastAPI) -> None:
    registry = CollectorRegistry()
    requests = Counter("modalens_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("modalens_request_seconds", "Request latency", ["route"], registry=registry)
    products_gauge = Gauge("modalens_indexed_products", "Products in the index", registry=registry)

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
        products_gauge.set(await service.run(lambda: len(service.engine.index)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _openai_route(request: Request) -> bool:
    return request.url.path.startswith("/v1/")


def _error_body(request: Request, exc: Exception, status: int) -> dict[str, Any]:
    """``{"detail": ...}``, or OpenAI's ``{"error": {...}}`` on the OpenAI-compatible routes (/v1/...)."""
    return embeddings.error_body(exc, status) if _openai_route(request) else {"detail": str(exc)}


def _add_error_handlers(app: FastAPI) -> None:
    """The one mapping of user errors to HTTP: a ModalensError answers its ``http_status`` with a one-line ``detail``."""

    @app.exception_handler(ModalensError)
    async def user_error(request: Request, exc: ModalensError) -> JSONResponse:
        headers = {"WWW-Authenticate": "X-API-Key"} if exc.http_status == 401 else None
        return JSONResponse(_error_body(request, exc, exc.http_status), status_code=exc.http_status, headers=headers)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(_error_body(request, exc, 400), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if not _openai_route(request):
            return await request_validation_exception_handler(request, exc)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:])
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else str(first.get("msg", "invalid request"))
        return JSONResponse(embeddings.error_body(ValueError(message), 400), status_code=400)

    @app.exception_handler(IndexStoreError)
    async def index_error(request: Request, exc: IndexStoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)
