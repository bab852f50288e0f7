"""One product: read it, its photos, "more like this"; create, replace and delete it (writes need an API key).

Ids may contain ``/`` (the image-folder reader makes such ids from subfolders): the
routes take the id with a path converter (``{product_id:id}``: anything, newlines
included, so that ``ProductId`` can refuse what no id may hold with a 422 rather than
a bare 404), so ``/api/products/shoes/red-1`` is product ``shoes/red-1``; clients
percent-encode ids (``validation.product_url``). An id that itself ends in
``/similar`` or ``/image`` cannot be read with GET.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Annotated, Any, Optional, Union

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import FileResponse
from PIL import Image
from starlette.convertors import Convertor, register_url_convertor
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, TypeAdapter

from ...catalog.schema import CatalogError, Product
from ...errors import InvalidInputError, ModalensError, NotFoundError
from ..dependencies import ProductId, get_service, get_settings, read_upload, require_write, validation_errors
from ..service import Service
from ..settings import ServeSettings
from ..validation import MAX_K, MAX_OFFSET, check_id, loads_json, product_url
from .search import page



class _IdConvertor(Convertor):
    """Like Starlette's ``path`` (slashes included), but matching newlines too, so the id check sees every id."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", _IdConvertor())

router = APIRouter(prefix="/api", tags=["products"])

ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
WRITE = [Depends(require_write)]


class ProductBody(BaseModel):
    """A product as ``PUT`` takes it: types are checked, never converted (``"price": true`` is refused)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: Optional[StrictStr] = Field(None, description="If given, must equal the id in the path.")
    title: StrictStr = Field("", max_length=2000)
    description: StrictStr = Field("", max_length=20000)
    attributes: dict[StrictStr, Union[StrictStr, StrictInt, StrictFloat, None]] = Field(default_factory=dict, max_length=200)
    price: Optional[Union[StrictInt, StrictFloat]] = Field(None, ge=0, allow_inf_nan=False)
    split: Optional[StrictStr] = Field(None, max_length=100)
    extra: dict[StrictStr, Any] = Field(default_factory=dict)
    images: Any = Field(None, description="Ignored: photos come only as uploads (a client must not name server files).")


_PRODUCT = TypeAdapter(ProductBody)


@router.get("/products/{product_id:id}/similar")
async def similar(
    product_id: ProductId,
    svc: ServiceDep,
    k: int = Query(12, ge=1, le=MAX_K),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """"More like this" for an indexed product."""
    started = time.perf_counter()
    hits = await svc.run(_similar_or_404, svc, product_id, offset + k)
    return page(hits, offset, k, started)


def _similar_or_404(svc: Service, product_id: str, k: int):
    try:
        return svc.engine.similar(product_id, k)
    except KeyError:
        raise NotFoundError(f"no product {product_id!r}") from None


def _get_or_404(svc: Service, product_id: str) -> Product:
    try:
        return svc.engine.index.get(product_id)
    except KeyError:
        raise NotFoundError(f"no product {product_id!r}") from None


@router.get("/products/{product_id:id}/image")
async def product_image(product_id: ProductId, svc: ServiceDep, n: int = Query(0, ge=0, le=1000)) -> FileResponse:
    """A product's n-th photo, as stored (only files a product record names are ever served)."""
    product = await svc.run(_get_or_404, svc, product_id)
    if not 0 <= n < len(product.images) or not Path(product.images[n]).is_file():
        raise NotFoundError(f"product {product_id!r} has no image {n}")
    return FileResponse(product.images[n], headers={"Cache-Control": "public, max-age=3600"})


@router.get("/products/{product_id:id}")
async def get_product(product_id: ProductId, svc: ServiceDep) -> dict[str, Any]:
    """A product as stored, its photos as URLs on this server (``image_urls``): the server's file paths stay private."""
    product = await svc.run(_get_or_404, svc, product_id)
    record = product.to_dict()
    record.pop("images")
    record["image_urls"] = [product_url(product_id, "image", query=f"n={n}") for n in range(len(product.images))]
    return record


@router.put("/products/{product_id:id}", dependencies=WRITE)
async def put_product(
    product_id: ProductId,
    svc: ServiceDep,
    settings: SettingsDep,
    product: str = Form(..., description="The product as JSON (title, attributes, price, ...)."),
    image: Optional[UploadFile] = File(None, description="Its photo; optional when updating a product that has one."),
) -> dict[str, Any]:
    """Create or replace a product; it is searchable as soon as this returns."""
    record = product_record(product_id, product)
    if image is not None:
        photo = await read_upload(image, settings)
        record.images = [str(_store_upload(settings, photo))]
    else:
        try:
            record.images = (await svc.run(svc.engine.index.get, product_id)).images
        except KeyError:
            raise ModalensError("a new product needs an image upload") from None
    report = await svc.run(svc.engine.build, [record])
    if report.failed:
        raise ModalensError(f"product {product_id!r} could not be embedded")
    return {"id": product_id, "added": report.added, "unchanged": report.skipped_unchanged}


def product_record(product_id: str, text: str) -> Product:
    """The ``product`` form field as a Product: JSON with limits, exact types (422 otherwise), the path's id."""
    body = validation_errors(_PRODUCT, loads_json(text, "product"), ("body", "product"))
    if body.id is not None and body.id != product_id:
        raise InvalidInputError(f"the product's id {body.id!r} differs from the id in the path {product_id!r}")
    for name in body.attributes:
        check_id(name, "attribute name")
    data = body.model_dump(exclude={"id", "images"})
    try:
        return Product(id=product_id, **data)
    except CatalogError as e:
        raise InvalidInputError(f"bad product: {e}") from None


def _store_upload(settings: ServeSettings, photo: Image.Image) -> Path:
    """Keep uploaded photos in the upload folder (beside the index unless set), named by content, as normalised JPEG."""
    folder = settings.uploads_folder
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(photo.tobytes()).hexdigest()
    path = folder / f"{digest}.jpg"
    if not path.exists():
        tmp = folder / f".{digest}.tmp"
        photo.save(tmp, format="JPEG", quality=92)
        tmp.replace(path)
    return path


@router.delete("/products/{product_id:id}", dependencies=WRITE)
async def delete_product(product_id: ProductId, svc: ServiceDep) -> dict[str, Any]:
    removed = await svc.run(svc.engine.delete, [product_id])
    if not removed:
        raise NotFoundError(f"no product {product_id!r}")
    return {"id": product_id, "deleted": True}
