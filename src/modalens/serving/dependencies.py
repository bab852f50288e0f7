"""What every route depends on, in one place: the key policy, the server's parts, and validated input.

Keys (one header, ``X-API-Key``, for every router, the review router included):

* an **API key** (``--api-key`` / ``MODALENS_API_KEYS``) allows writes and reads;
* a **reviewer key** (``modalens match review DB --add-reviewer NAME``; stored hashed in the review
  queue) allows review decisions *as that reviewer*, and reads;
* reads need either kind only when the server says so (``MODALENS_READ_REQUIRES_KEY=1``).

The app attaches :func:`require_read` to whole routers (``include_router(..., dependencies=[...])``);
writes add :func:`require_write`, review decisions :func:`current_reviewer`.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any, Optional, Union

from fastapi import Depends, Header, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import StrictStr, TypeAdapter, ValidationError

from ..catalog.images import ImageError, load_image
from ..errors import ForbiddenError, ModalensError, PayloadTooLargeError
from .settings import ServeSettings
from .validation import check_id, loads_json, where_clause

if TYPE_CHECKING:
    from .routers.review import ReviewState
    from .service import Service

#: The ``filters`` of a search, as both search routes validate them (the JSON body's field and the photo form's field).
Filters = dict[str, Union[StrictStr, list[StrictStr]]]
_FILTERS = TypeAdapter(Filters)


class KeyRequiredError(ModalensError):
    """No key, or one the server does not know (HTTP 401)."""

    http_status = 401


# ----------------------------------------------------------------- the server's parts


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_review(request: Request) -> ReviewState:
    state = getattr(request.app.state, "review", None)
    if state is None:
        raise ModalensError("no review queue is configured on this server")
    return state


# ----------------------------------------------------------------- keys

ApiKey = Annotated[Optional[str], Header(alias="X-API-Key", description="An API key, or a reviewer key.")]


def _is_api_key(settings: ServeSettings, key: str | None) -> bool:
    return bool(key) and any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys)  # type: ignore[union-attr]


def _reviewer_of(request: Request, key: str | None) -> str | None:
    state = getattr(request.app.state, "review", None)
    if state is None or not key:
        return None
    with state.lock:
        return state.queue.reviewer_for_key(key)


def _bearer(request: Request) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header: what OpenAI's clients send (``/v1/embeddings``)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def require_read(request: Request, x_api_key: ApiKey = None) -> None:
    """Reads are open, unless the server requires a key for them: then an API key or a reviewer key
    (in ``X-API-Key``, or as ``Authorization: Bearer KEY``)."""
    settings = get_settings(request)
    x_api_key = x_api_key or _bearer(request)
    if not settings.read_requires_key or _is_api_key(settings, x_api_key):
        return
    if await run_in_threadpool(_reviewer_of, request, x_api_key) is None:  # a database lookup: off the event loop
        raise KeyRequiredError("a valid X-API-Key header is required")


async def require_write(request: Request, x_api_key: ApiKey = None) -> None:
    """Writes need an API key; with none configured they are refused outright."""
    settings = get_settings(request)
    if not settings.api_keys:
        raise ForbiddenError("writes are disabled: start the server with an API key (MODALENS_API_KEYS or --api-key)")
    if not _is_api_key(settings, x_api_key):
        raise KeyRequiredError("a valid X-API-Key header is required for writes")


def current_reviewer(request: Request, x_api_key: ApiKey = None) -> str:
    """The reviewer whose key came with the request: review decisions are made as them, and only them."""
    state = get_review(request)
    name = _reviewer_of(request, x_api_key)
    if name is not None:
        return name
    if _is_api_key(get_settings(request), x_api_key):
        raise ForbiddenError("review decisions need a reviewer key: an API key names no reviewer")
    with state.lock:
        known = state.queue.reviewers()
    if not known:
        raise ForbiddenError("no reviewer keys exist yet: create one with `modalens match review DB --add-reviewer NAME`")
    raise KeyRequiredError("a valid reviewer key is required in the X-API-Key header")


Reviewer = Annotated[str, Depends(current_reviewer)]


def same_reviewer(named: Any, reviewer: str) -> None:
    """A request may still name its reviewer (older clients do), but only the key's own name."""
    if named is not None and (not isinstance(named, str) or named.strip() != reviewer):
        raise ForbiddenError(f"this key belongs to reviewer {reviewer!r}; a request cannot act as someone else")


# ----------------------------------------------------------------- validated input


def product_id(product_id: str) -> str:
    """The ``{product_id}`` of a path (it may contain ``/``), checked like every id."""
    return check_id(product_id, "product id")


ProductId = Annotated[str, Depends(product_id)]


def filters_field(raw: str, field: str = "filters", *, price_min: float | None = None, price_max: float | None = None) -> dict | None:
    """Filters sent as a JSON string (the photo search's form field): parsed with limits, then the same checks as the JSON body."""
    value = loads_json(raw, field)
    validation_errors(_FILTERS, value, ("body", field))
    return where_clause(value, price_min, price_max)


def validation_errors(adapter: TypeAdapter, value: Any, loc: tuple) -> Any:
    """Validate ``value`` with a pydantic adapter; errors answer 422 exactly as FastAPI's own body validation does."""
    try:
        return adapter.validate_python(value)
    except ValidationError as e:
        errors = [{**err, "loc": (*loc, *err["loc"])} for err in e.errors(include_url=False, include_context=False, include_input=False)]
        raise RequestValidationError(errors) from None


async def read_upload(upload: UploadFile, settings: ServeSettings) -> Image.Image:
    """An uploaded photo, decoded with the server's limits (size, pixels)."""
    limit = settings.max_upload_bytes
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"upload is larger than {limit // 2**20} MiB")
    if not data:
        raise ModalensError("the uploaded file is empty")
    try:
        return load_image(data, max_pixels=settings.max_image_pixels, max_bytes=limit)
    except ImageError as e:
        raise ModalensError(f"not a usable image: {e}") from None
