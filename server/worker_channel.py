"""One SQL worker process and the socket the server talks to it over.

A job goes out as one frame and its reply comes back as one frame
(``sql_worker.encode``); the server waits for the reply either blocking this
thread or on an asyncio event loop, never longer than the job's deadline.
Reads take whatever has arrived in one system call, so a small reply costs one
``recv``; on an event loop the socket is watched for exactly one wake-up.
"""

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from typing import Any

from sql_env.server.worker_protocol import HEADER_SIZE, decode, encode, frame_length

# Imported by name, not run as __main__, so its job classes unpickle as sent.
WORKER_COMMAND = (
    "import sys; from sql_env.server.sql_worker import main; main(sys.argv[1:])"
)
READ_CHUNK = 1 << 16


class WorkerChannel:
    """A running worker: its process and its end of the socketpair."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self.idle_since = time.monotonic()
        self._buffer = bytearray()

    @classmethod
    def spawn(cls, memory_mb: int, nice: int) -> "WorkerChannel":
        """Start a worker (fork and exec: safe in a process with CUDA loaded).

        Raises:
            OSError: The process could not be started.
        """
        parent, child = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_COMMAND,
                    str(child.fileno()),
                    str(memory_mb),
                    str(nice),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        return cls(proc, parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the worker and close the socket; its job's CPU stops now."""
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.sock.close()

    def reap(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout_s)

    # ------------------------------------------------------------- blocking

    def call(self, job: Any, timeout_s: float) -> Any:
        """Send a job and wait for its reply, at most ``timeout_s``.

        Raises:
            TimeoutError: No reply in time.
            EOFError: The worker died.
        """
        deadline = time.monotonic() + timeout_s
        self.sock.settimeout(timeout_s)
        self.sock.sendall(encode(job))
        return self.receive(deadline)

    def receive(self, deadline: float) -> Any:
        """The next reply, blocking until ``deadline`` (``monotonic`` time)."""
        while True:
            reply = self._complete()
            if reply is not _INCOMPLETE:
                return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            self._take(self.sock.recv(READ_CHUNK))

    # ------------------------------------------------------------ asyncio

    async def call_async(self, job: Any, timeout_s: float) -> Any:
        """``call`` on the running event loop, without a thread."""
        loop = asyncio.get_running_loop()
        frame = encode(job)
        self.sock.setblocking(False)
        async with asyncio.timeout(timeout_s):
            try:
                sent = self.sock.send(frame)
            except BlockingIOError:
                sent = 0
            if sent < len(frame):
                await loop.sock_sendall(self.sock, frame[sent:])
            while True:
                reply = self._complete()
                if reply is not _INCOMPLETE:
                    return reply
                await self._readable(loop)
                try:
                    self._take(self.sock.recv(READ_CHUNK))
                except BlockingIOError:
                    continue

    async def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the socket has data (or is closed)."""
        ready = loop.create_future()
        fd = self.sock.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    # ------------------------------------------------------------ framing

    def _take(self, data: bytes) -> None:
        if not data:
            raise EOFError("the SQL worker closed its socket")
        self._buffer += data

    def _complete(self) -> Any:
        """The reply if a whole frame has arrived, else ``_INCOMPLETE``."""
        if len(self._buffer) < HEADER_SIZE:
            return _INCOMPLETE
        end = HEADER_SIZE + frame_length(self._buffer[:HEADER_SIZE])
        if len(self._buffer) < end:
            return _INCOMPLETE
        reply = decode(self._buffer[HEADER_SIZE:end])
        del self._buffer[:end]
        return reply


_INCOMPLETE = object()
