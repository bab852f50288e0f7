"""The reviewer's web page and its API: two offers side by side, accept / reject / skip / undo.

Use standalone (``create_review_app(db)``, ``modalens match review DB``) or in
the search server: ``include_review(app, db)`` adds the router under
``/review`` and opens the queue.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from .review import DECISIONS, LeaseError, ReviewQueue

WEB_DIR = Path(__file__).parent / "review_web"
_STATIC = {"review.js": "text/javascript", "review.css": "text/css"}

router = APIRouter(prefix="/review", tags=["review"])


class DecideRequest(BaseModel):
    pair_id: str = Field(..., max_length=500)
    reviewer: str = Field(..., min_length=1, max_length=100)
    decision: str = Field(..., description="match, no-match or skip")


class ReviewerRequest(BaseModel):
    reviewer: str = Field(..., min_length=1, max_length=100)


class _State:
    def __init__(self, url: str | Path, lease_seconds: float) -> None:
        self.url = url
        self.lease_seconds = lease_seconds
        self.lock = threading.Lock()  # one connection, used by one request at a time
        self._queue: ReviewQueue | None = None

    @property
    def queue(self) -> ReviewQueue:
        if self._queue is None:
            self._queue = ReviewQueue(self.url, lease_seconds=self.lease_seconds)
        return self._queue

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None


def _state(request: Request) -> _State:
    state = getattr(request.app.state, "review", None)
    if state is None:
        raise HTTPException(503, "no review queue is configured on this server")
    return state


def _pair_json(pair, request: Request) -> dict:
    data = pair.to_json()
    for side, offer in (("left", pair.left), ("right", pair.right)):
        data[side]["images"] = [str(request.url_for("review_image", pair_id=pair.id, side=side, n=n)) for n in range(len(offer.images))]
    return data


@router.get("", include_in_schema=False)
@router.get("/", include_in_schema=False)
def review_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


@router.get("/static/{name}", include_in_schema=False)
def review_static(name: str) -> FileResponse:
    if name not in _STATIC:
        raise HTTPException(404, "not found")
    return FileResponse(WEB_DIR / name, media_type=_STATIC[name])


@router.get("/api/next")
def next_pair(request: Request, reviewer: str) -> dict:
    """Lease the next doubtful pair to ``reviewer`` (or return the one they hold)."""
    state = _state(request)
    with state.lock:
        try:
            pair = state.queue.lease(reviewer)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        stats = state.queue.stats()
    return {"pair": _pair_json(pair, request) if pair else None, "stats": stats}


@router.post("/api/decide")
def decide(request: Request, body: DecideRequest) -> dict:
    if body.decision not in DECISIONS:
        raise HTTPException(422, f"decision must be one of {DECISIONS}")
    state = _state(request)
    with state.lock:
        try:
            state.queue.decide(body.pair_id, body.reviewer, body.decision)
        except LeaseError as e:
            raise HTTPException(409, str(e)) from None
        return {"ok": True, "stats": state.queue.stats()}


@router.post("/api/undo")
def undo(request: Request, body: ReviewerRequest) -> dict:
    state = _state(request)
    with state.lock:
        try:
            pair = state.queue.undo(body.reviewer)
        except LeaseError as e:
            raise HTTPException(409, str(e)) from None
        return {"pair": _pair_json(pair, request) if pair else None, "stats": state.queue.stats()}


@router.post("/api/release")
def release(request: Request, body: ReviewerRequest) -> dict:
    state = _state(request)
    with state.lock:
        state.queue.release(body.reviewer)
    return {"ok": True}


@router.get("/api/stats")
def stats(request: Request) -> dict:
    state = _state(request)
    with state.lock:
        return state.queue.stats()


@router.get("/api/image/{pair_id}/{side}/{n}", name="review_image")
def review_image(request: Request, pair_id: str, side: str, n: int) -> Response:
    """A photo of one of the pair's offers, as the seller's listing shows it (matching views applied)."""
    if side not in ("left", "right"):
        raise HTTPException(404, "side must be left or right")
    state = _state(request)
    with state.lock:
        try:
            pair = state.queue.get(pair_id)
        except KeyError:
            raise HTTPException(404, "no such pair") from None
    offer = pair.left if side == "left" else pair.right
    if not 0 <= n < len(offer.images):
        raise HTTPException(404, "no such image")
    path, view = offer.images[n], offer.views[n]
    if not Path(path).is_file():
        raise HTTPException(404, "image file is missing")
    if view is None:
        return FileResponse(path)
    from ..catalog.images import load_image
    from ..encoders.features import file_key
    from .pairs import apply_view

    image = apply_view(load_image(path), view, file_key(path))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return Response(buffer.getvalue(), media_type="image/jpeg")


def include_review(app: FastAPI, db: str | Path, *, lease_seconds: float = 300.0) -> None:
    """Add the review page (``/review``) and API (``/review/api/...``) to an app, backed by ``db``."""
    app.state.review = _State(db, lease_seconds)
    app.include_router(router)


def create_review_app(db: str | Path, *, lease_seconds: float = 300.0) -> FastAPI:
    """A standalone review server; ``/`` redirects to the page."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.review.close()

    app = FastAPI(title="modalens review", lifespan=lifespan)
    include_review(app, db, lease_seconds=lease_seconds)

    @app.get("/", include_in_schema=False)
    def root() -> HTMLResponse:
        return HTMLResponse('<meta http-equiv="refresh" content="0; url=/review/">', status_code=200)

    @app.get("/health", include_in_schema=False)
    def health() -> dict:
        return {"status": "ok"}

    return app
