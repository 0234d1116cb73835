"""Keeping the client connections of `kb serve`'s workers even.

uvicorn's workers accept from one shared socket, and asyncio accepts every connection waiting when its loop
wakes. A client that opens its pool in one burst (20 users' keep-alive connections at once) can so land every
connection on one worker while the other idles, for as long as the connections live: one core of two, about half
the throughput (measured with scripts/httpload.py's per-window series, docs/BENCHMARKS.md). Each worker publishes
how many client connections sent it a request in the last WINDOW seconds in a small file the workers share; a
worker holding more than its share answers one request with `Connection: close` (at most every SHED_EVERY
seconds), and the client's next connection is accepted by whichever worker takes it first, most often the idle
one. Once the connections are even nothing is closed.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import tempfile
import time
from pathlib import Path

from kb.serve.guard import ASGIApp, Message, Receive, Scope, Send

WINDOW = 2.0  # a connection counts while it sent a request within this many seconds
SHED_EVERY = 0.05  # seconds between two connections a worker closes (their clients must reconnect first)
HANDOVER = 0.5  # seconds a closed connection still counts: its client reconnects at its next request
MAX_SLOTS = 64  # workers the table has room for
_SLOT = struct.Struct("<qd")  # connections, time.time() when published
_FLOCK = struct.Struct("hhxxxxqqixxxx")  # struct flock on 64-bit Linux: type, whence, start, len, pid (0)


def table_path(server_pid: int, port: int) -> Path:
    """The table of one `kb serve` (its parent process) on one port; the parent removes it when it stops."""
    return Path(tempfile.gettempdir()) / f"kb-serve-{server_pid}-{port}.workers"


class Table:
    """The workers' connection counts, one slot each, in a memory-mapped file; a worker owns its slot by a
    lock, which the kernel releases when the worker dies (a restarted worker takes it over)."""

    def __init__(self, path: Path) -> None:
        """Raises OSError when the file cannot be opened or every slot is taken."""
        size = MAX_SLOTS * _SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)
            self.slot = self._claim()
        except OSError:
            os.close(self._fd)
            raise
        self.publish(0)

    def _claim(self) -> int:
        # An open-file-description lock (Linux): unlike a POSIX record lock it belongs to this open file, not the
        # process, so closing another descriptor of the file does not drop it.
        for slot in range(MAX_SLOTS):
            lock = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, slot * _SLOT.size, _SLOT.size, 0)
            with contextlib.suppress(OSError):
                fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, lock)
                return slot
        raise OSError(f"all {MAX_SLOTS} worker slots are taken")

    def publish(self, connections: int) -> None:
        _SLOT.pack_into(self._map, self.slot * _SLOT.size, connections, time.time())

    def others(self) -> int:
        """Connections the other workers published within the last 2 x WINDOW seconds (older: idle or gone)."""
        now, total = time.time(), 0
        for slot in range(MAX_SLOTS):
            count, stamp = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if slot != self.slot and now - stamp < 2 * WINDOW:
                total += count
        return total

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class Balance:
    """ASGI middleware of one worker: counts its client connections and closes one when it holds more than its
    share of all the workers' connections."""

    def __init__(self, app: ASGIApp, table: Table, workers: int) -> None:
        self.app, self.table, self.workers = app, table, workers
        self.seen: dict[tuple[str, int], float] = {}  # client (address, port) -> its last request
        # Connections closed within HANDOVER: their clients are reconnecting, to a worker that may not count them
        # yet; they stay in the total meanwhile, so a worker never closes more than its surplus.
        self.handed: dict[tuple[str, int], float] = {}
        self._published = (-1, 0.0)  # count, when
        self._last_close = 0.0
        self.closed = 0  # connections closed to even the load (tests read it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or not self._close(tuple(client), time.monotonic()):
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)

    def _close(self, client: tuple[str, int], now: float) -> bool:
        """Whether this request's connection is to be closed after its answer (the count published meanwhile)."""
        self.seen[client] = now
        count, when = self._published
        if now - when > WINDOW / 4:
            self.seen = {c: t for c, t in self.seen.items() if now - t < WINDOW}
        self.handed = {c: t for c, t in self.handed.items() if now - t < HANDOVER}
        mine = len(self.seen)
        total = mine + len(self.handed) + self.table.others()
        fair = -(-total // self.workers)
        close = mine > max(1, fair) and now - self._last_close >= SHED_EVERY
        if close:
            del self.seen[client]
            self.handed[client] = now
            self._last_close, self.closed = now, self.closed + 1
            mine -= 1
        if mine != count or now - when > WINDOW / 4:
            self.table.publish(mine)
            self._published = (mine, now)
        return close
