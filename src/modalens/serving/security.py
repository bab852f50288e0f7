"""API keys: every write needs one; reads need one only when the server is configured so."""

from __future__ import annotations

import hmac
from typing import Optional

from fastapi import Header, HTTPException, Request


def _key_ok(request: Request, key: Optional[str]) -> bool:
    keys = request.app.state.service.settings.api_keys
    return bool(key) and any(hmac.compare_digest(key, k) for k in keys)


async def require_write(request: Request, x_api_key: Optional[str] = Header(None)) -> None:
    if not request.app.state.service.settings.api_keys:
        raise HTTPException(403, "writes are disabled: start the server with an API key (MODALENS_API_KEYS or --api-key)")
    if not _key_ok(request, x_api_key):
        raise HTTPException(401, "a valid X-API-Key header is required for writes")


async def require_read(request: Request, x_api_key: Optional[str] = Header(None)) -> None:
    if request.app.state.service.settings.read_requires_key and not _key_ok(request, x_api_key):
        raise HTTPException(401, "a valid X-API-Key header is required")
