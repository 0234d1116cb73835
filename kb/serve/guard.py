"""What stands in front of every endpoint: the optional API key, the request size limit, one structured access
log line per request, and RFC 9457 problem+json bodies for every refusal (never a traceback)."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

access = logging.getLogger("kb.serve.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024  # a question is at most 2,000 characters; a quote check's text fits many times over


@dataclass(frozen=True)
class GuardSettings:
    api_key: str | None = None  # KB_API_KEY: every request must carry `Authorization: Bearer <key>`
    max_body: int = MAX_BODY_BYTES
    log_requests: bool = True


def log_requests_to_stderr() -> None:
    """The access log as one JSON line per request on stderr, whatever the root logger's level."""
    if not access.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False


def problem(status: int, detail: str, **extra: object) -> bytes:
    """An RFC 9457 problem+json body: one line of detail that says what to change."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail, **extra}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


PROBLEM_TYPE = "application/problem+json"


async def send_problem(send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = problem(status, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class Guard:
    """Pure ASGI middleware (no per-request task or body copy, unlike Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, settings: GuardSettings) -> None:
        self.app, self.settings = app, settings
        self._key = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, sent = 0, 0

        async def send_logged(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self._guarded(scope, receive, send_logged)
        finally:
            if self.settings.log_requests:
                access.info(
                    json.dumps(
                        {
                            "method": scope["method"],
                            "path": scope["path"],
                            "status": status,
                            "ms": round((time.perf_counter() - started) * 1000, 1),
                            "bytes": sent,
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    )
                )

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        if self._key is not None and not hmac.compare_digest(headers.get(b"authorization", b""), self._key):
            await send_problem(
                send,
                401,
                "missing or wrong API key: send the header 'Authorization: Bearer <KB_API_KEY>'",
                ((b"www-authenticate", b"Bearer"),),
            )
            return
        limit = self.settings.max_body
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await send_problem(send, 413, f"request body of {length.decode(errors='replace')} bytes: at most {limit}")
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_limited, send_tracked)
        except _TooLarge:
            if not started:
                await send_problem(send, 413, f"request body over {limit} bytes")
