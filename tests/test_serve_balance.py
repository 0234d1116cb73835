"""kb.serve.balance: a worker holding more than its share of the client connections closes one at a time, and
stops once the workers' shares are even (two workers simulated over one shared table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from kb.serve import balance
from kb.serve.balance import Balance, Table


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def ask(worker: Balance, client: tuple[str, int]) -> bool:
    """One request from this client connection; whether the answer closes the connection."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    anyio.run(worker, {"type": "http", "client": client}, receive, send)
    assert sent[-1]["body"] == b"ok"
    return (b"connection", b"close") in sent[0]["headers"]


def test_the_worker_holding_every_connection_hands_over_half(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(balance, "SHED_EVERY", 0.0)
    monkeypatch.setattr(balance, "HANDOVER", 60.0)  # however slowly this machine runs the requests
    path = tmp_path / "workers"
    a, b = Balance(ok, Table(path), 2), Balance(ok, Table(path), 2)
    assert a.table.slot != b.table.slot
    users = [("127.0.0.1", 40000 + n) for n in range(20)]
    # Every connection of a burst landed on worker a; b is idle. a closes until it holds its share, no further.
    closed = [u for u in users if ask(a, u)]
    assert len(closed) == 10 and len(a.seen) == 10
    # The closed ones reconnect (new ports) and land on b: now even, nobody closes anything.
    for n, _ in enumerate(closed):
        assert not ask(b, ("127.0.0.1", 50000 + n))
    for _ in range(3):
        assert not any(ask(a, u) for u in users if u not in closed)
        assert not any(ask(b, ("127.0.0.1", 50000 + n)) for n in range(len(closed)))
    assert (a.closed, b.closed) == (10, 0)


def test_one_worker_or_few_connections_close_nothing(tmp_path: Path) -> None:
    lone = Balance(ok, Table(tmp_path / "workers"), 1)
    assert not any(ask(lone, ("127.0.0.1", 40000 + n)) for n in range(20))
    pair = Balance(ok, Table(tmp_path / "pair"), 2)
    assert not ask(pair, ("127.0.0.1", 1))  # one connection is no imbalance to even out
