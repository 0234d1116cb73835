"""The real server processes: `python -m kb serve` over HTTP (with MCP at /mcp) and `python -m kb mcp` over stdio,
driven by the official MCP SDK's own client and by httpx; and a server that keeps answering while a build
publishes a new generation, then serves it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from kb.embed.models import HashingEmbedder
from kb.index.build import build
from tests.conftest import load_script, make_corpus

ROOT = Path(__file__).parent.parent
INDEX = ROOT / "index"
TOOLS = {"search", "get_article", "check_quote", "list_documents", "references"}


_APPSERVER = load_script("appserver")
free_port = _APPSERVER.free_port


LOGS: dict[int, Path] = {}  # server pid -> its output file


def start(index: Path, env: dict[str, str] | None = None, key: str | None = None) -> tuple[subprocess.Popen, str]:
    """`python -m kb serve` on a free port with one worker; returns once /health answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "kb", "serve", "--index", str(index), "--port", str(port), "--workers", "1"]
    # The server logs every request: into a file, not a pipe nobody reads while it serves (a full pipe would
    # block the server on its next log line once a few hundred requests have been answered).
    log = tempfile.NamedTemporaryFile("w+", prefix="kb-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    LOGS[proc.pid] = Path(log.name)
    url = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, LOGS[proc.pid].read_text()
        try:
            if httpx.get(f"{url}/health", headers=headers, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("the server did not become healthy")


def stop(proc: subprocess.Popen) -> str:
    """Stop a server started by `start`; its output."""
    _APPSERVER.stop_process(proc, 30)
    path = LOGS.pop(proc.pid)
    out = path.read_text()
    path.unlink()
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = start(INDEX)
    yield url
    stop(proc)


async def exercise(client: Client) -> dict[str, Any]:
    """Every tool once, and refusals; returns what the tests check."""
    tools = {t.name for t in (await client.list_tools()).tools}
    search = await client.call_tool("search", {"query": "个人信息处理者的义务", "k": 3})
    hit = search.structured_content["result"][0]
    article = await client.call_tool("get_article", {"chunk_id": hit["chunk_id"], "neighbours": 1})
    quote = await client.call_tool("check_quote", {"text": "电子商务经营者应当依法办理市场主体登记"})
    docs = await client.call_tool("list_documents", {"level": "法律", "limit": 5})
    refs = await client.call_tool("references", {"chunk_id": "zh/zh03_advertising_law.txt#57"})
    empty = await client.call_tool("search", {"query": "", "k": 3})
    huge_k = await client.call_tool("search", {"query": "x", "k": 1_000_000})
    no_article = await client.call_tool("get_article", {"doc_id": "zh/zh07_pipl.txt", "article": "第九千条"})
    return {
        "tools": tools,
        "results": [search, article, quote, docs, refs],
        "hit": hit,
        "article": article.structured_content,
        "quote": quote.structured_content,
        "docs": docs.structured_content["result"],
        "refs": refs.structured_content,
        "refused": [empty, huge_k, no_article],
    }


def check_exercise(got: dict[str, Any]) -> None:
    assert got["tools"] == TOOLS
    assert not any(r.is_error for r in got["results"])
    hit = got["hit"]
    for field in ("citation", "doc_id", "article", "page", "char_start", "char_end", "chunk_id", "text"):
        assert field in hit, field
    assert hit["citation"].startswith("《中华人民共和国个人信息保护法》")
    assert got["article"]["passages"][0]["chunk_id"] == hit["chunk_id"]
    assert got["quote"]["verdict"] == "verbatim" and got["quote"]["matches"][0]["citation"]
    assert got["docs"] and all(d["meta"]["level"] == "法律" for d in got["docs"])
    assert any(x["target"] and x["target"]["chunk_id"] == "zh/zh03_advertising_law.txt#9" for x in got["refs"]["made"])
    empty, huge_k, no_article = got["refused"]
    assert empty.is_error and "empty query" in empty.content[0].text
    assert huge_k.is_error and "k" in huge_k.content[0].text
    assert no_article.is_error and "no article" in no_article.content[0].text


pytestmark = pytest.mark.model


def test_mcp_tools_over_streamable_http(server: str) -> None:
    async def go() -> dict[str, Any]:
        async with Client(f"{server}/mcp") as client:
            return await exercise(client)

    check_exercise(anyio.run(go))


def test_rerank_and_tuned_switch_through_the_real_server(server: str) -> None:
    """The API's and the MCP tool's `rerank` and `tuned` reach the search: each switch changes the answer, and the
    API and the tool answer alike for each setting."""
    question = "网购商品无理由退货期限"

    def api(**switches: bool) -> list[dict[str, Any]]:
        r = httpx.get(f"{server}/search", params={"q": question, "k": 10, **switches}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    settings = [{}, {"rerank": False}, {"tuned": False}, {"rerank": False, "tuned": False}]

    async def tool() -> list[list[dict[str, Any]]]:
        async with Client(f"{server}/mcp") as client:
            return [
                (await client.call_tool("search", {"query": question, "k": 10, **s})).structured_content["result"]
                for s in settings
            ]

    answers = [api(**s) for s in settings]
    assert anyio.run(tool) == answers
    default, fused, untuned, plain = answers
    # The reranker's shown score is its own 0-1 value; the fused order's is a reciprocal-rank sum (far below 1).
    assert fused != default and max(h["score"] for h in fused) < 0.2 < default[0]["score"]
    # Without the question tower the e5 channel ranks other passages (or the same in another order).
    assert [h["channels"] for h in untuned] != [h["channels"] for h in default]
    assert [h["channels"] for h in plain] != [h["channels"] for h in fused]


def test_mcp_tools_over_stdio() -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "kb", "mcp", "--index", str(INDEX)])

    async def go() -> dict[str, Any]:
        async with Client(params, read_timeout_seconds=300) as client:
            return await exercise(client)

    check_exercise(anyio.run(go))


def test_http_server_refuses_bad_input_with_problems(server: str) -> None:
    """Through uvicorn: a 100 kB question in the URL and in a body, malformed JSON, k = 10^6, an unknown filter."""
    with httpx.Client(base_url=server, timeout=60) as c:
        big = "问" * 34_000  # 100 kB in UTF-8
        for r in (
            c.get("/search", params={"q": "a" * 3000}),  # over 2,000 characters
            c.post("/search", json={"q": big}),
            c.post("/search", content=b"{not json", headers={"content-type": "application/json"}),
            c.get("/search", params={"q": "x", "k": 10**6}),
            c.get("/search", params={"q": "x", "region": "上海"}),
        ):
            assert 400 <= r.status_code < 500, r.status_code
            assert r.headers["content-type"] == "application/problem+json"
            assert "\n" not in r.json()["detail"]
        assert c.get("/search", params={"q": "电子商务", "k": 2}).status_code == 200  # and it still serves
    # A 100 kB URL: uvicorn (h11) refuses request heads over its limit before the app sees them.
    with socket.create_connection(("127.0.0.1", int(server.rsplit(":", 1)[1]))) as s:
        s.sendall(b"GET /search?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(200).split(b" ")[1].startswith(b"4")


def test_server_answers_through_a_rebuild_and_serves_the_new_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = make_corpus(tmp_path / "corpus")
    index = tmp_path / "index"
    build(corpus, index, {"dense": HashingEmbedder()}, cache_dir=None)
    env = {**os.environ, "KB_API_KEY": "k3y"}
    proc, url = start(index, env=env, key="k3y")
    headers = {"authorization": "Bearer k3y"}
    statuses: list[int] = []
    stop_flag = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            while not stop_flag.is_set():
                statuses.append(c.get("/search", params={"q": "e-commerce platform", "k": 3}).status_code)

    try:
        assert httpx.get(f"{url}/health").status_code == 401  # the key protects the process too
        assert httpx.post(f"{url}/mcp", json={}).status_code == 401  # the MCP endpoint as well
        before = httpx.get(f"{url}/health", headers=headers).json()["generation"]
        worker = threading.Thread(target=hammer)
        worker.start()
        (corpus / "zz_quokka.txt").write_text(
            "Quokka marketplace rules\n\nSellers of quokka plush toys must label them.\n"
        )
        build(corpus, index, {"dense": HashingEmbedder()}, cache_dir=None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = httpx.get(f"{url}/health", headers=headers).json()
            if health["generation"] != before:
                break
            time.sleep(0.5)
        hits = httpx.get(f"{url}/search", params={"q": "quokka plush", "k": 3}, headers=headers).json()
        stop_flag.set()
        worker.join()
        # The load generator against this server: bounded, real HTTP, its figures printed as one JSON line.
        load = load_script("httpload")
        monkeypatch.setattr(load, "questions", lambda n: ["quokka plush", "e-commerce platform", "rural logistics"])
        port = url.rsplit(":", 1)[1]
        capsys.readouterr()
        assert load.main(["--port", port, "--api-key", "k3y", "--users", "3", "--seconds", "1", "--warmup", "0"]) == 0
        figures = json.loads(capsys.readouterr().out)
        assert figures["errors"] == 0 and figures["answered"] > 0 and figures["p95_ms"] > 0
    finally:
        stop_flag.set()
        log = stop(proc)
    assert health["generation"] != before, log[-2000:]
    assert hits and hits[0]["doc_id"] == "zz_quokka.txt"
    assert statuses and set(statuses) == {200}, json.dumps(statuses[-20:])
