"""Scene photos held beside the products (``modalens index SCENES --scenes``): the scenes that hold a product.

A scene matches by its best instance (:mod:`modalens.index.scenes`): the words, a product photo or an indexed
product is compared with each product the instance decoder found in the scene. Scene ids may contain ``/``, as
product ids may (the ``{scene_id:id}`` converter of :mod:`.products`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ...errors import InvalidInputError, NotFoundError
from ..dependencies import get_service, get_settings, read_upload
from ..service import Service
from ..settings import ServeSettings
from ..validation import MAX_K, MAX_QUERY_CHARS, check_id, scene_hit_json
from . import products as _products  # noqa: F401  (registers the {…:id} path converter)

router = APIRouter(prefix="/api/scenes", tags=["scenes"])

ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]


class SceneSearchRequest(BaseModel):
    q: Optional[str] = Field(None, max_length=MAX_QUERY_CHARS, description="Words describing a product, e.g. \"brown belt\".")
    product_id: Optional[str] = Field(None, description="Or an indexed product: the scenes that hold it.")
    k: int = Field(12, ge=1, le=MAX_K, description="Scenes to return.")


def scenes_page(hits: list, started: float) -> dict[str, Any]:
    return {"scenes": [scene_hit_json(h) for h in hits], "took_ms": round((time.perf_counter() - started) * 1000, 1)}


@router.post("/search")
async def search_scenes(body: SceneSearchRequest, svc: ServiceDep) -> dict[str, Any]:
    """The scenes that hold a product described by words (``q``) or an indexed product (``product_id``), best first;
    each with the instance that matched (decoder query, objectness, its attention over the 7×7 cells)."""
    has_words = bool(body.q and body.q.strip())
    if has_words == (body.product_id is not None):
        raise InvalidInputError("give either q (words) or product_id; to search by photo use /api/scenes/search/image")
    started = time.perf_counter()
    if has_words:
        hits = await svc.run(svc.engine.search_scenes, body.q, None, None, body.k)
    else:
        product_id = check_id(body.product_id, "product_id")
        try:
            hits = await svc.run(svc.engine.search_scenes, None, None, product_id, body.k)
        except KeyError:
            raise NotFoundError(f"product {product_id!r} is not in the index") from None
    return scenes_page(hits, started)


@router.post("/search/image")
async def search_scenes_by_image(
    svc: ServiceDep,
    settings: SettingsDep,
    image: UploadFile = File(..., description="A product photo (a packshot): the scenes that hold that product."),
    k: int = Form(12, ge=1, le=MAX_K, description="Scenes to return."),
) -> dict[str, Any]:
    """The scenes that hold the product in an uploaded photo, best first."""
    started = time.perf_counter()
    photo = await read_upload(image, settings)
    hits = await svc.run(svc.engine.search_scenes, None, photo, None, k)
    return scenes_page(hits, started)


@router.get("/{scene_id:id}/image")
async def scene_image(scene_id: str, svc: ServiceDep) -> FileResponse:
    """A stored scene's photo (the server's file path stays private)."""
    try:
        scene = await svc.run(lambda: svc.engine.scene_index().get_scene(check_id(scene_id, "scene id")))
    except KeyError:
        raise NotFoundError(f"scene {scene_id!r} is not in the index") from None
    if not scene.images or not Path(scene.images[0]).is_file():
        raise NotFoundError(f"scene {scene_id!r} has no readable photo")
    return FileResponse(scene.images[0], headers={"Cache-Control": "public, max-age=3600"})
