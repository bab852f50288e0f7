"""Search by words, by photo or both; zero-shot tagging; the filter menus' values."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import BaseModel, Field

from ...errors import InvalidInputError
from ..dependencies import Filters, filters_field, get_service, get_settings, read_upload
from ..service import Service
from ..settings import ServeSettings
from ..validation import MAX_K, MAX_LABELS, MAX_OFFSET, MAX_QUERY_CHARS, hit_json, where_clause

router = APIRouter(prefix="/api", tags=["search"])

ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]


class SearchRequest(BaseModel):
    q: Optional[str] = Field(None, max_length=MAX_QUERY_CHARS, description="Words to search for.")
    k: int = Field(12, ge=1, le=MAX_K, description="Results per page.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Results to skip (paging).")
    filters: Filters = Field(default_factory=dict, description="field → value(s), e.g. {\"gender\": \"Women\"}.")
    price_min: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    price_max: Optional[float] = Field(None, ge=0, allow_inf_nan=False)
    hybrid: float = Field(0.0, ge=0, le=1, description="Weight of BM25 keyword matching on titles, blended with the vector score.")


def page(hits: list, offset: int, k: int, started: float) -> dict[str, Any]:
    shown = hits[offset : offset + k]
    return {"results": [hit_json(h) for h in shown], "offset": offset, "k": k, "took_ms": round((time.perf_counter() - started) * 1000, 1)}


@router.post("/search")
async def search_text(body: SearchRequest, svc: ServiceDep) -> dict[str, Any]:
    """Search by words (and filters)."""
    if not (body.q and body.q.strip()):
        raise InvalidInputError("q must contain words; to search by photo use /api/search/image")
    started = time.perf_counter()
    where = where_clause(body.filters, body.price_min, body.price_max)
    hits = await svc.run(svc.engine.search, body.q, None, body.offset + body.k, where, body.hybrid)
    return page(hits, body.offset, body.k, started)


@router.post("/search/image")
async def search_image(
    svc: ServiceDep,
    settings: SettingsDep,
    image: UploadFile = File(..., description="A photo (JPEG, PNG, WebP...)."),
    q: Optional[str] = Form(None, max_length=MAX_QUERY_CHARS, description="Optional words: photo and words together."),
    k: int = Form(12, ge=1, le=MAX_K),
    offset: int = Form(0, ge=0, le=MAX_OFFSET),
    filters: str = Form("{}", description="JSON object field → value(s), checked as /api/search checks its filters."),
    price_min: Optional[float] = Form(None, ge=0, allow_inf_nan=False),
    price_max: Optional[float] = Form(None, ge=0, allow_inf_nan=False),
) -> dict[str, Any]:
    """Search by an uploaded photo, optionally with words."""
    started = time.perf_counter()
    where = filters_field(filters, price_min=price_min, price_max=price_max)
    photo = await read_upload(image, settings)
    hits = await svc.run(svc.engine.search, q, photo, offset + k, where)
    return page(hits, offset, k, started)


@router.post("/search/look")
async def search_look(
    svc: ServiceDep,
    settings: SettingsDep,
    image: UploadFile = File(..., description="A photo of several products (an outfit, a lookbook page)."),
    k: int = Form(5, ge=1, le=MAX_K, description="Matches per product found."),
    filters: str = Form("{}", description="JSON object field → value(s), checked as /api/search checks its filters."),
) -> dict[str, Any]:
    """Shop the look: each product the model's instance decoder finds in the photo, where it looked (a box on the
    photo, and its attention over the 7×7 feature-map cells), how sure it is, and its top catalogue matches. Needs a model with an instance decoder (docs/instances.md)."""
    started = time.perf_counter()
    where = filters_field(filters)
    photo = await read_upload(image, settings)
    items = await svc.run(svc.engine.look, photo, k, where)
    products = [
        {"query": i.query, "objectness": round(i.objectness, 4), "box": list(i.box), "attention": [round(a, 5) for a in i.attention],
         "results": [hit_json(h) for h in i.hits]}
        for i in items
    ]
    return {"products": products, "k": k, "took_ms": round((time.perf_counter() - started) * 1000, 1)}


@router.post("/tag")
async def tag(
    svc: ServiceDep,
    settings: SettingsDep,
    image: UploadFile = File(...),
    labels: str = Form(..., description="Comma-separated labels."),
    top: int = Form(5, ge=1, le=50),
) -> dict[str, Any]:
    """Zero-shot tagging of an uploaded photo against any label set."""
    label_list = list(dict.fromkeys(s.strip() for s in labels.split(",") if s.strip()))
    if not label_list or len(label_list) > MAX_LABELS:
        raise InvalidInputError(f"give 1 to {MAX_LABELS} comma-separated labels")
    photo = await read_upload(image, settings)

    def run() -> list:
        from ...zeroshot import build_classifier  # imports torch: only tagging needs it

        model = svc.handle.model  # loaded on first use (a torch-free server's queries never load it)
        classifier = build_classifier(model, label_list)
        return classifier.top_k(model.encode_image([photo]), k=min(top, len(label_list)))[0]

    ranked = await svc.run(run)
    return {"labels": [{"label": label, "score": round(score, 4)} for label, score in ranked]}


@router.get("/facets")
async def facets(svc: ServiceDep) -> dict[str, Any]:
    """What the products can be filtered by, built from the data: ``fields`` (each filterable attribute with
    2 to 60 values, each value with its product count) and ``price`` (``min``, ``max``, ``count``, or null)."""
    return await svc.run(svc.facets)
