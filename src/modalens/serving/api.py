"""REST routes: search (text, photo, both, "more like this"), tagging, products, ingest jobs.

Every input is checked at the edge and refused with a 4xx that says why:
oversize uploads (413), files that are not images or are decompression bombs
(400), unknown ids (404), absurd k or offsets and malformed filters (422/400).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from PIL import Image
from pydantic import BaseModel, Field

from ..catalog.images import ImageError, load_image
from ..catalog.schema import KNOWN_ATTRIBUTES, CatalogError, Product
from .security import require_read, require_write
from .service import Service

router = APIRouter(prefix="/api")
FILTER_FIELDS = frozenset(KNOWN_ATTRIBUTES) | {"split"}


class SearchRequest(BaseModel):
    q: Optional[str] = Field(None, max_length=500, description="Words to search for.")
    k: int = Field(12, ge=1, le=100, description="Results per page.")
    offset: int = Field(0, ge=0, le=1000, description="Results to skip (paging).")
    filters: dict[str, list[str] | str] = Field(default_factory=dict, description="field → value(s), e.g. {\"gender\": \"Women\"}.")
    price_min: Optional[float] = Field(None, ge=0)
    price_max: Optional[float] = Field(None, ge=0)
    hybrid: float = Field(0.0, ge=0, le=1, description="Weight of BM25 keyword matching on titles, blended with the vector score.")


class IngestRequest(BaseModel):
    source: str = Field(..., description="A catalogue the server can read: kagl, a .csv/.jsonl path, an image folder.")


def service(request: Request) -> Service:
    return request.app.state.service


def where_clause(filters: dict[str, Any], price_min: float | None = None, price_max: float | None = None) -> dict | None:
    unknown = set(filters) - FILTER_FIELDS
    if unknown:
        raise HTTPException(400, f"unknown filter fields {sorted(unknown)}; allowed: {sorted(FILTER_FIELDS)}")
    where: dict[str, Any] = {}
    for key, value in filters.items():
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(isinstance(v, str) and v.strip() for v in values):
            raise HTTPException(400, f"filter {key!r} needs one or more non-empty values")
        where[key] = values
    if price_min is not None:
        where["price_min"] = price_min
    if price_max is not None:
        where["price_max"] = price_max
    return where or None


def hit_json(hit) -> dict[str, Any]:
    p = hit.product
    return {
        "id": hit.id,
        "score": round(float(hit.score), 4),
        "title": p.title,
        "attributes": p.attributes,
        "price": p.price,
        "image_url": f"/api/products/{hit.id}/image" if p.images else None,
    }


async def read_upload(upload: UploadFile, svc: Service) -> Image.Image:
    limit = svc.settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload is larger than {limit // 2**20} MiB")
    if not data:
        raise HTTPException(400, "the uploaded file is empty")
    try:
        return load_image(data, max_pixels=svc.settings.max_image_pixels, max_bytes=limit)
    except ImageError as e:
        raise HTTPException(400, f"not a usable image: {e}") from None


def page(hits: list, offset: int, k: int, started: float) -> dict[str, Any]:
    shown = hits[offset : offset + k]
    return {"results": [hit_json(h) for h in shown], "offset": offset, "k": k, "took_ms": round((time.perf_counter() - started) * 1000, 1)}


@router.post("/search", dependencies=[Depends(require_read)])
async def search_text(body: SearchRequest, svc: Service = Depends(service)) -> dict[str, Any]:
    """Search by words (and filters)."""
    if not (body.q and body.q.strip()):
        raise HTTPException(422, "q must contain words; to search by photo use /api/search/image")
    started = time.perf_counter()
    where = where_clause(body.filters, body.price_min, body.price_max)
    hits = await svc.run(svc.engine.search, body.q, None, body.offset + body.k, where, body.hybrid)
    return page(hits, body.offset, body.k, started)


@router.post("/search/image", dependencies=[Depends(require_read)])
async def search_image(
    image: UploadFile = File(..., description="A photo (JPEG, PNG, WebP...)."),
    q: Optional[str] = Form(None, max_length=500, description="Optional words: photo and words together."),
    k: int = Form(12, ge=1, le=100),
    offset: int = Form(0, ge=0, le=1000),
    filters: str = Form("{}", description="JSON object field → value(s)."),
    svc: Service = Depends(service),
) -> dict[str, Any]:
    """Search by an uploaded photo, optionally with words."""
    started = time.perf_counter()
    try:
        parsed = json.loads(filters)
    except json.JSONDecodeError as e:
        raise HTTPException(400, f"filters is not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise HTTPException(400, "filters must be a JSON object")
    where = where_clause(parsed)
    photo = await read_upload(image, svc)
    hits = await svc.run(svc.engine.search, q, photo, offset + k, where)
    return page(hits, offset, k, started)


@router.get("/products/{product_id}/similar", dependencies=[Depends(require_read)])
async def similar(product_id: str, k: int = 12, offset: int = 0, svc: Service = Depends(service)) -> dict[str, Any]:
    """"More like this" for an indexed product."""
    if not 1 <= k <= svc.settings.max_k or not 0 <= offset <= svc.settings.max_offset:
        raise HTTPException(422, f"k must be 1..{svc.settings.max_k} and offset 0..{svc.settings.max_offset}")
    started = time.perf_counter()
    hits = await svc.run(_similar_or_404, svc, product_id, offset + k)
    return page(hits, offset, k, started)


def _similar_or_404(svc: Service, product_id: str, k: int):
    try:
        return svc.engine.similar(product_id, k)
    except KeyError:
        raise HTTPException(404, f"no product {product_id!r}") from None


@router.post("/tag", dependencies=[Depends(require_read)])
async def tag(
    image: UploadFile = File(...),
    labels: str = Form(..., description="Comma-separated labels."),
    top: int = Form(5, ge=1, le=50),
    svc: Service = Depends(service),
) -> dict[str, Any]:
    """Zero-shot tagging of an uploaded photo against any label set."""
    label_list = list(dict.fromkeys(s.strip() for s in labels.split(",") if s.strip()))
    if not label_list or len(label_list) > svc.settings.max_labels:
        raise HTTPException(422, f"give 1 to {svc.settings.max_labels} comma-separated labels")
    photo = await read_upload(image, svc)

    def run() -> list:
        from ..zeroshot import build_classifier  # imports torch: only tagging needs it

        classifier = build_classifier(svc.model, label_list)
        return classifier.top_k(svc.model.encode_image([photo]), k=min(top, len(label_list)))[0]

    ranked = await svc.run(run)
    return {"labels": [{"label": label, "score": round(score, 4)} for label, score in ranked]}


@router.get("/products/{product_id}", dependencies=[Depends(require_read)])
async def get_product(product_id: str, svc: Service = Depends(service)) -> dict[str, Any]:
    product = await svc.run(_get_or_404, svc, product_id)
    return product.to_dict()


def _get_or_404(svc: Service, product_id: str) -> Product:
    try:
        return svc.engine.index.get(product_id)
    except KeyError:
        raise HTTPException(404, f"no product {product_id!r}") from None


@router.get("/products/{product_id}/image", dependencies=[Depends(require_read)])
async def product_image(product_id: str, n: int = 0, svc: Service = Depends(service)) -> FileResponse:
    """A product's n-th photo, as stored (only files a product record names are ever served)."""
    product = await svc.run(_get_or_404, svc, product_id)
    if not 0 <= n < len(product.images) or not Path(product.images[n]).is_file():
        raise HTTPException(404, f"product {product_id!r} has no image {n}")
    return FileResponse(product.images[n], headers={"Cache-Control": "public, max-age=3600"})


@router.put("/products/{product_id}", dependencies=[Depends(require_write)])
async def put_product(
    product_id: str,
    product: str = Form(..., description="The product as JSON (id, title, attributes, price, ...)."),
    image: Optional[UploadFile] = File(None, description="Its photo; optional when updating a product that has one."),
    svc: Service = Depends(service),
) -> dict[str, Any]:
    """Create or replace a product; it is searchable as soon as this returns."""
    try:
        data = json.loads(product)
        if not isinstance(data, dict):
            raise ValueError("product must be a JSON object")
        data["id"] = product_id
        data.pop("images", None)  # photos come only as uploads: a client must not name server files
        record = Product.from_dict(data)
    except (ValueError, CatalogError, TypeError) as e:
        raise HTTPException(400, f"bad product: {e}") from None
    if image is not None:
        photo = await read_upload(image, svc)
        record.images = [str(_store_upload(svc, photo))]
    else:
        try:
            record.images = (await svc.run(svc.engine.index.get, product_id)).images
        except KeyError:
            raise HTTPException(400, "a new product needs an image upload") from None
    report = await svc.run(svc.engine.build, [record])
    if report.failed:
        raise HTTPException(400, f"product {product_id!r} could not be embedded")
    return {"id": product_id, "added": report.added, "unchanged": report.skipped_unchanged}


def _store_upload(svc: Service, photo: Image.Image) -> Path:
    """Keep uploaded photos beside the index, named by content, as normalised JPEG."""
    folder = Path(svc.settings.index_dir) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(photo.tobytes()).hexdigest()
    path = folder / f"{digest}.jpg"
    if not path.exists():
        tmp = folder / f".{digest}.tmp"
        photo.save(tmp, format="JPEG", quality=92)
        tmp.replace(path)
    return path


@router.delete("/products/{product_id}", dependencies=[Depends(require_write)])
async def delete_product(product_id: str, svc: Service = Depends(service)) -> dict[str, Any]:
    removed = await svc.run(svc.engine.delete, [product_id])
    if not removed:
        raise HTTPException(404, f"no product {product_id!r}")
    return {"id": product_id, "deleted": True}


@router.post("/ingest", status_code=202, dependencies=[Depends(require_write)])
async def ingest(body: IngestRequest, svc: Service = Depends(service)) -> dict[str, Any]:
    """Start a bulk ingest in the background; poll ``/api/jobs/{id}`` for progress."""
    return svc.start_ingest(body.source).to_dict()


@router.get("/jobs/{job_id}", dependencies=[Depends(require_read)])
async def job_status(job_id: str, svc: Service = Depends(service)) -> dict[str, Any]:
    job = svc.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job.to_dict()


@router.get("/facets", dependencies=[Depends(require_read)])
async def facets(svc: Service = Depends(service)) -> dict[str, Any]:
    """Values of the filterable fields, with counts, for the page's filter menus."""
    return await svc.run(svc.facets)
