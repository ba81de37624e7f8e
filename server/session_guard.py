"""The door in front of OpenEnv's session routes: one socket per session, fair limits.

OpenEnv's ``create_app`` serves episodes over ``/ws`` and also offers sessions
that a socket does not own: ``openenv/session/create`` over ``POST /mcp`` (and
a ``/mcp`` WebSocket) makes one, and ``/ws?session_id=...`` attaches a second
socket to any live session, including one another socket plays. Its idle
reaper frees a session's slot while that session's socket stays open. SQLEnv
has no MCP tools, so none of that serves a player, and each of it breaks a
promise: two sockets racing one episode, slots held by nobody, more episodes
in play than the limit. ``SessionGuard`` wraps the app (ASGI) and, before
OpenEnv sees a connection:

- refuses ``/ws?session_id=...`` (attaching to a session), with an error frame;
- admits a ``/ws`` socket only while a slot of ``SessionSlots`` is free (the
  same slots the web page's visitors take), else sends OpenEnv's own
  ``CAPACITY_REACHED`` error frame;
- closes a socket idle for ``idle_timeout_s`` with no reply owed, with close
  code 4000 and a reason, which ends its session (OpenEnv's reaper is off);
- answers a frame longer than ``max_frame_chars`` with an error frame without
  passing it on;
- refuses MCP session creation and the ``/mcp`` WebSocket.

docs/security.md describes the upstream problems for an OpenEnv report.
"""

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

IDLE_CLOSE_CODE = 4000  # application-defined: the server ended an idle session
POLICY_CLOSE_CODE = 1008
TRY_AGAIN_CLOSE_CODE = 1013
MAX_MCP_BODY_BYTES = 1_000_000
NO_MCP_MESSAGE = (
    "SQLEnv has no MCP tools and offers no MCP sessions; play episodes over the "
    "WebSocket /ws (one socket, one session)."
)


class SessionSlots:
    """How many episodes may be in play at once, over every transport.

    Args:
        capacity: The limit (``MAX_CONCURRENT_ENVS``).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def try_acquire(self) -> bool:
        with self._lock:
            if self._used >= self.capacity:
                return False
            self._used += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._used = max(0, self._used - 1)


def error_frame(message: str, code: str, **extra: Any) -> str:
    """An error frame in OpenEnv's ``/ws`` format."""
    return json.dumps(
        {"type": "error", "data": {"message": message, "code": code, **extra}}
    )


class SessionGuard:
    """ASGI middleware enforcing one socket per session and fair limits.

    Args:
        app: The app ``create_app`` built.
        slots: The shared session slots.
        idle_timeout_s: Seconds a socket may stay idle (no frame received, no
            reply owed) before it is closed; None keeps idle sockets open.
        max_frame_chars: Longest text frame passed on to OpenEnv.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        slots: SessionSlots,
        idle_timeout_s: float | None,
        max_frame_chars: int,
    ) -> None:
        self.app = app
        self.slots = slots
        self.idle_timeout_s = idle_timeout_s
        self.max_frame_chars = max_frame_chars

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "websocket" and path == "/ws":
            await self._episode_socket(scope, receive, send)
        elif scope["type"] == "websocket" and path == "/mcp":
            await _refuse_socket(
                receive, send, NO_MCP_MESSAGE, "SESSION_ERROR", POLICY_CLOSE_CODE
            )
        elif scope["type"] == "http" and path == "/mcp" and scope["method"] == "POST":
            await self._mcp_request(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # ------------------------------------------------------------------ /ws

    async def _episode_socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "session_id" in query:
            await _refuse_socket(
                receive,
                send,
                "Attaching to an existing session is not allowed: each session "
                "belongs to the socket that opened it. Connect without session_id.",
                "SESSION_ERROR",
                POLICY_CLOSE_CODE,
            )
            return
        if not self.slots.try_acquire():
            await _refuse_socket(
                receive,
                send,
                f"Server at capacity: {self.slots.capacity} sessions are in play. "
                "Try again later.",
                "CAPACITY_REACHED",
                TRY_AGAIN_CLOSE_CODE,
                active_sessions=self.slots.used,
                max_sessions=self.slots.capacity,
            )
            return
        try:
            await self.app(scope, *_Connection(self, receive, send).channels())
        finally:
            self.slots.release()

    # ----------------------------------------------------------------- /mcp

    async def _mcp_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_MCP_BODY_BYTES:
                await _json_response(send, 413, {"detail": "Request body too large."})
                return
        if _asks_for_session(bytes(body)):
            request_id = None
            try:
                request_id = json.loads(body).get("id")
            except (ValueError, AttributeError):
                pass
            await _json_response(
                send,
                200,
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {"code": -32601, "message": NO_MCP_MESSAGE},
                },
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _asks_for_session(body: bytes) -> bool:
    try:
        request = json.loads(body)
    except ValueError:
        return False
    requests = request if isinstance(request, list) else [request]
    return any(
        isinstance(r, dict) and str(r.get("method", "")).startswith("openenv/session/")
        for r in requests
    )


class _Connection:
    """One admitted ``/ws`` socket: idle timer, reply accounting, frame cap."""

    def __init__(self, guard: SessionGuard, receive: Receive, send: Send) -> None:
        self.guard = guard
        self._receive = receive
        self._send = send
        self.owed = 0  # frames passed on that OpenEnv has not answered yet
        self.last_activity = time.monotonic()
        self.closed = False

    def channels(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.send":
            self.owed = max(0, self.owed - 1)
            self.last_activity = time.monotonic()
        if self.closed and message["type"] != "websocket.accept":
            return  # the guard already closed this socket
        await self._send(message)

    async def receive(self) -> Message:
        while True:
            message = await self._next()
            if message["type"] != "websocket.receive":
                return message
            size = len(message.get("text") or message.get("bytes") or b"")
            if size > self.guard.max_frame_chars:
                await self._send(
                    {
                        "type": "websocket.send",
                        "text": error_frame(
                            f"Frame of {size:,} characters is longer than the "
                            f"limit of {self.guard.max_frame_chars:,}.",
                            "FRAME_TOO_LARGE",
                        ),
                    }
                )
                continue
            self.owed += 1
            self.last_activity = time.monotonic()
            return message

    async def _next(self) -> Message:
        timeout = self.guard.idle_timeout_s
        while True:
            if timeout is None or self.owed > 0:
                return await self._receive()
            remaining = self.last_activity + timeout - time.monotonic()
            if remaining > 0:
                try:
                    return await asyncio.wait_for(self._receive(), remaining)
                except TimeoutError:
                    continue  # re-check: a reply may have been sent meanwhile
            self.closed = True
            await self._send(
                {
                    "type": "websocket.close",
                    "code": IDLE_CLOSE_CODE,
                    "reason": f"Session closed after {timeout:g} s idle; "
                    "reconnect to play again.",
                }
            )
            return {"type": "websocket.disconnect", "code": IDLE_CLOSE_CODE}


async def _refuse_socket(
    receive: Receive,
    send: Send,
    message: str,
    code: str,
    close_code: int,
    **extra: Any,
) -> None:
    """Accept, say why in one error frame, and close."""
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": error_frame(message, code, **extra)})
    await send({"type": "websocket.close", "code": close_code, "reason": code})


async def _json_response(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
