"""``POST /v1/embeddings``: the OpenAI embeddings API, so clients and frameworks that speak it use modalens as their
embedding service (``OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...)``).

Texts are embedded by the text tower, and an input that is an image as a data URL
(``data:image/jpeg;base64,...``) by the image tower, into the same space: a text and a
photo compare by their dot product (the vectors are unit length), as everywhere in modalens.
``encoding_format`` ``float`` and ``base64`` (little-endian float32, what the official Python
client asks for by default) are both answered. Token-id inputs are refused: they would be
another model's tokens. ``usage`` counts whitespace-separated words of the texts (and 1 per
image), not tokens. Errors come in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ...catalog.images import ImageError, load_image
from ...errors import InvalidInputError
from ..dependencies import get_service, get_settings
from ..service import Service
from ..settings import ServeSettings

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

ServiceDep = Annotated[Service, Depends(get_service)]
SettingsDep = Annotated[ServeSettings, Depends(get_settings)]

#: Inputs one request may carry, and characters of one text (the text tower reads far fewer tokens anyway).
MAX_INPUTS = 256
MAX_TEXT_CHARS = 8192
#: Names a client may give as ``model`` besides the served model's own.
MODEL_ALIASES = ("modalens",)

_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)


class EmbeddingRequest(BaseModel):
    input: Union[str, list[str], list[int], list[list[int]]] = Field(
        ..., description="A text, or a list of texts; an image as a data URL (data:image/...;base64,...) is embedded as a photo."
    )
    model: str = Field(..., description="The served model's name (GET /v1/models lists it).")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(None, ge=1, description="Must be the model's own dimension (vectors are not truncated).")
    user: Optional[str] = None


class OpenAIError(InvalidInputError):
    """An error answered in OpenAI's shape (``serving.app`` formats every error under /v1 so)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.code, self.http_status = param, code, status


@router.get("/models")
async def models(settings: SettingsDep) -> dict[str, Any]:
    """The served model, as OpenAI's model list."""
    return {"object": "list", "data": [{"id": settings.model, "object": "model", "created": 0, "owned_by": "modalens"}]}


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, svc: ServiceDep, settings: SettingsDep) -> dict[str, Any]:
    """Embed texts and photos (data URLs) as OpenAI's embeddings API does."""
    if body.model not in (settings.model, *MODEL_ALIASES):
        raise OpenAIError(
            f"the model {body.model!r} is not served here; this server embeds with {settings.model!r}",
            param="model", code="model_not_found", status=404,
        )
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    if not items:
        raise OpenAIError("input must not be empty", param="input")
    if not all(isinstance(item, str) for item in items):
        raise OpenAIError("token ids are not accepted: send the texts themselves", param="input", code="invalid_input")
    if len(items) > MAX_INPUTS:
        raise OpenAIError(f"at most {MAX_INPUTS} inputs per request", param="input")
    encoder = svc.handle.query_encoder
    if body.dimensions is not None and body.dimensions != encoder.embed_dim:
        raise OpenAIError(f"dimensions must be {encoder.embed_dim} for {settings.model!r}", param="dimensions")

    texts: dict[int, str] = {}
    photos: dict[int, Any] = {}
    for i, item in enumerate(items):
        if _DATA_URL.match(item):
            photos[i] = _photo(item, i, settings)
        elif not item.strip():
            raise OpenAIError(f"input[{i}] is empty", param="input")
        elif len(item) > MAX_TEXT_CHARS:
            raise OpenAIError(f"input[{i}] is longer than {MAX_TEXT_CHARS} characters", param="input")
        else:
            texts[i] = item

    def encode() -> np.ndarray:
        out = np.zeros((len(items), encoder.embed_dim), np.float32)
        if texts:
            out[list(texts)] = encoder.encode_text(list(texts.values()))
        if photos:
            out[list(photos)] = encoder.encode_image(list(photos.values()))
        return out

    vectors = await svc.run(encode)
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)} for i, vector in enumerate(vectors)
    ]
    words = sum(len(text.split()) for text in texts.values()) + len(photos)
    return {"object": "list", "data": data, "model": settings.model, "usage": {"prompt_tokens": words, "total_tokens": words}}


def _photo(url: str, i: int, settings: ServeSettings):
    payload = url.split(",", 1)[1]
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise OpenAIError(f"input[{i}] is a data URL whose base64 does not decode", param="input") from None
    try:
        return load_image(data, max_pixels=settings.max_image_pixels, max_bytes=settings.max_upload_bytes)
    except ImageError as e:
        raise OpenAIError(f"input[{i}] is not a usable image: {e}", param="input") from None


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def error_body(exc: Exception, status: int) -> dict[str, Any]:
    """OpenAI's error shape for ``exc``."""
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "invalid_request_error"}
    return {
        "error": {
            "message": str(exc),
            "type": kind.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": getattr(exc, "param", None),
            "code": getattr(exc, "code", None),
        }
    }


__all__ = ["MAX_INPUTS", "OpenAIError", "error_body", "router"]
