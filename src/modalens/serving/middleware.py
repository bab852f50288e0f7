"""Request-body limits enforced before anything parses the body (pure ASGI, so nothing buffers it first).

A body announced larger than its limit (``Content-Length``) is refused with 413
before a byte of it is read; a body without a length (chunked) is counted as it
streams in and refused with 413 as soon as it passes the limit, so the server
holds at most the limit plus one chunk. Multipart bodies (photo uploads) and all
other bodies (JSON) have separate limits.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passes its limit; the middleware answers 413 in the app's place."""


class BodyLimit:
    """Refuse request bodies over ``max_json_bytes`` (or ``max_multipart_bytes`` for multipart) with 413."""

    def __init__(self, app: ASGIApp, *, max_json_bytes: int, max_multipart_bytes: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_multipart_bytes = max_multipart_bytes

    def limit_for(self, scope: Scope) -> int:
        content_type = _header(scope, b"content-type") or b""
        return self.max_multipart_bytes if content_type.lower().startswith(b"multipart/") else self.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if announced > limit:
                await _refuse(send, limit)
                return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # whatever the app makes of the broken-off body, the client gets our 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await _refuse(send, limit)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


async def _refuse(send: Send, limit: int) -> None:
    size = f"{limit / 2**20:.1f} MiB" if limit >= 2**20 else f"{limit} bytes"
    await _answer(send, 413, f"request body is larger than the limit of {size}")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
