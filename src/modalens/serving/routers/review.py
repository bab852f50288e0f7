"""The match reviewer's page and its API: two offers side by side, accept / reject / skip / undo.

Two routers: ``pages`` (the HTML, script and style: no data, no key) and ``api``,
which the app includes under ``/review/api`` with the same read-key policy as the
search API. Every call that leases or decides acts as the reviewer whose key came
with it (``X-API-Key``; keys are made with ``modalens match review DB
--add-reviewer NAME``): a request cannot name someone else, an unknown key leases
nothing, and each reviewer holds at most one pair at a time, so a flood of names
can no longer lock the queue.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from ...errors import InvalidInputError, NotFoundError
from ...matching.review import DECISIONS, ReviewQueue
from ..dependencies import Reviewer, get_review, same_reviewer
from ..validation import MAX_ID_CHARS

WEB_DIR = Path(__file__).resolve().parents[2] / "matching" / "review_web"
_STATIC = {"review.js": "text/javascript", "review.css": "text/css"}

pages = APIRouter(prefix="/review", tags=["review"], include_in_schema=False)
api = APIRouter(prefix="/review/api", tags=["review"])


class ReviewState:
    """The review queue of one server: one connection, used by one request at a time."""

    def __init__(self, url: str | Path, lease_seconds: float) -> None:
        self.url = url
        self.lease_seconds = lease_seconds
        self.lock = threading.Lock()
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


State = Annotated[ReviewState, Depends(get_review)]


class DecideRequest(BaseModel):
    pair_id: str = Field(..., min_length=1, max_length=2 * MAX_ID_CHARS + 2)
    decision: str = Field(..., description="match, no-match or skip")
    reviewer: Optional[str] = Field(None, description="Not needed: the key says who decides. If given, it must be the key's reviewer.")


class ReviewerRequest(BaseModel):
    reviewer: Optional[str] = Field(None, description="Not needed: the key says who. If given, it must be the key's reviewer.")


def image_url(request: Request, pair_id: str, side: str, n: int) -> str:
    return f"{request.scope.get('root_path', '')}/review/api/image/{quote(pair_id, safe='')}/{side}/{n}"


def _pair_json(pair, request: Request) -> dict:
    data = pair.to_json()
    for side, offer in (("left", pair.left), ("right", pair.right)):
        data[side]["images"] = [image_url(request, pair.id, side, n) for n in range(len(offer.images))]
    return data


@pages.get("")
@pages.get("/")
def review_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


@pages.get("/static/{name}")
def review_static(name: str) -> FileResponse:
    if name not in _STATIC:
        raise NotFoundError("not found")
    return FileResponse(WEB_DIR / name, media_type=_STATIC[name])


@api.get("/me")
def me(reviewer: Reviewer) -> dict:
    """Who the key belongs to (the page shows it)."""
    return {"reviewer": reviewer}


@api.get("/next")
def next_pair(
    request: Request,
    reviewer: Reviewer,
    state: State,
    named: Optional[str] = Query(None, alias="reviewer", description="Not needed; if given, must be the key's reviewer."),
) -> dict:
    """Lease the next doubtful pair to the key's reviewer (or return the one they hold)."""
    same_reviewer(named, reviewer)
    with state.lock:
        pair = state.queue.lease(reviewer)
        stats = state.queue.stats()
    return {"pair": _pair_json(pair, request) if pair else None, "stats": stats}


@api.post("/decide")
def decide(request: Request, body: DecideRequest, reviewer: Reviewer, state: State) -> dict:
    """Record a decision on the pair the reviewer holds (409 when they no longer hold it)."""
    same_reviewer(body.reviewer, reviewer)
    if body.decision not in DECISIONS:
        raise InvalidInputError(f"decision must be one of {DECISIONS}")
    with state.lock:
        state.queue.decide(body.pair_id, reviewer, body.decision)
        return {"ok": True, "reviewer": reviewer, "stats": state.queue.stats()}


@api.post("/undo")
def undo(request: Request, reviewer: Reviewer, state: State, body: Optional[ReviewerRequest] = Body(None)) -> dict:
    """Undo the reviewer's own last decision; that pair comes back leased to them (409 if someone else holds it now)."""
    same_reviewer(body.reviewer if body else None, reviewer)
    with state.lock:
        pair = state.queue.undo(reviewer)
        return {"pair": _pair_json(pair, request) if pair else None, "stats": state.queue.stats()}


@api.post("/release")
def release(reviewer: Reviewer, state: State, body: Optional[ReviewerRequest] = Body(None)) -> dict:
    """Give the held pair back to the queue."""
    same_reviewer(body.reviewer if body else None, reviewer)
    with state.lock:
        state.queue.release(reviewer)
    return {"ok": True}


@api.get("/stats")
def stats(state: State) -> dict:
    with state.lock:
        return state.queue.stats()


@api.get("/audit")
def audit(state: State, target_precision: float = Query(0.99, ge=0.5, le=1.0), target_npv: float = Query(0.99, ge=0.5, le=1.0)) -> dict:
    """Running precision / NPV of the automatic decisions from the answered audit items (see `modalens match audit`)."""
    with state.lock:
        return state.queue.audit_estimate(target_precision=target_precision, target_npv=target_npv)


@api.get("/image/{pair_id:path}/{side}/{n}", name="review_image")
def review_image(pair_id: str, side: str, n: int, state: State) -> Response:
    """A photo of one of the pair's offers, as the seller's listing shows it (matching views applied)."""
    if side not in ("left", "right"):
        raise NotFoundError("side must be left or right")
    with state.lock:
        try:
            pair = state.queue.get(pair_id)
        except KeyError:
            raise NotFoundError("no such pair") from None
    offer = pair.left if side == "left" else pair.right
    if not 0 <= n < len(offer.images):
        raise NotFoundError("no such image")
    path, view = offer.images[n], offer.views[n]
    if not Path(path).is_file():
        raise NotFoundError("image file is missing")
    if view is None:
        return FileResponse(path)
    from ...catalog.images import load_image
    from ...encoders.features import file_key
    from ...matching.pairs import apply_view

    image = apply_view(load_image(path), view, file_key(path))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return Response(buffer.getvalue(), media_type="image/jpeg")
