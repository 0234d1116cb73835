"""The HTTP API in process (FastAPI's TestClient) over the shipped index: every endpoint, the JSON shapes the CLI
prints, and bad input answered with one-line problem+json, never a traceback. The real server process, MCP over
stdio and HTTP, and serving through a rebuild are in tests/test_serve_process.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from kb.cli import main as cli
from kb.serve import shapes
from kb.serve.guard import GuardSettings
from kb.serve.http import HttpSettings, create_app
from kb.serve.service import Service
from kb.serve.shapes import ArticleJSON, ReferencesJSON, VersionsJSON

ROOT = Path(__file__).parent.parent
INDEX = ROOT / "index"
pytestmark = pytest.mark.model

QUESTION = "电子商务平台经营者的责任"


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    s = Service(INDEX, refresh=False)
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(service: Service) -> Iterator[TestClient]:
    with TestClient(create_app(service, HttpSettings(mcp=False))) as c:
        yield c


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert cli([*argv, "--index", str(INDEX)]) == 0
    return json.loads(capsys.readouterr().out)


def assert_problem(r: Any, status: int, *words: str) -> None:
    """A refusal: the status, problem+json, one line of detail naming what to change."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"]
    assert "\n" not in body["detail"] and "Traceback" not in r.text
    for w in words:
        assert w in body["detail"], body["detail"]


def test_search_hits_carry_citations_and_match_the_declared_shape(client: TestClient) -> None:
    r = client.get("/search", params={"q": QUESTION, "k": 5})
    assert r.status_code == 200
    hits = TypeAdapter(list[shapes.HitJSON]).validate_python(r.json(), strict=True)  # unknown keys fail too
    assert len(hits) == 5 and r.headers["x-kb-generation"]
    for h in hits:
        assert h["citation"].startswith("《") and h["doc_id"] and h["chunk_id"].startswith(h["doc_id"] + "#")
        assert 0 <= h["char_start"] < h["char_end"] and "page" in h and h["article"]


def test_cli_and_api_print_identical_json(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    """One definition for both: the same question and filters give byte-for-byte the same objects."""
    cli_hits = cli_json(capsys, "search", QUESTION, "-k", "7", "--json", "--level", "法律", "--as-of", "2024-01-01")
    params = {"q": QUESTION, "k": 7, "levels": ["法律"], "as_of": "2024-01-01"}
    assert client.get("/search", params=params).json() == cli_hits
    assert client.post("/search", json=params).json() == cli_hits
    quote = "电子商务经营者应当依法办理市场主体登记"
    assert client.post("/quote", json={"text": quote}).json() == cli_json(capsys, "quote", quote, "--json")
    assert client.get("/documents").json() == cli_json(capsys, "docs", "--json")
    assert client.get("/facets").json() == cli_json(capsys, "docs", "--facets")


def test_rerank_and_tuned_switch_as_the_cli_flags_do(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    """`rerank` and `tuned` mean what `--rerank on|off` and `--tuned on|off` mean, in the API as in the CLI."""
    for rerank, tuned in (("off", "on"), ("on", "off"), ("off", "off")):
        cli_hits = cli_json(capsys, "search", QUESTION, "-k", "7", "--json", "--rerank", rerank, "--tuned", tuned)
        params = {"q": QUESTION, "k": 7, "rerank": rerank == "on", "tuned": tuned == "on"}
        assert client.get("/search", params=params).json() == cli_hits, (rerank, tuned)
        assert client.post("/search", json=params).json() == cli_hits, (rerank, tuned)
    default = client.get("/search", params={"q": QUESTION, "k": 7}).json()
    assert default == cli_json(capsys, "search", QUESTION, "-k", "7", "--json", "--rerank", "on", "--tuned", "on")
    assert client.get("/search", params={"q": QUESTION, "k": 7, "rerank": False}).json() != default


def test_every_search_filter_of_the_cli_is_accepted(client: TestClient) -> None:
    params = {
        "q": "personal information",
        "k": 3,
        "lang": "zh",
        "mode": "hybrid",
        "include_repealed": True,
        "levels": ["法律"],
        "issuers": ["全国人民代表大会常务委员会"],
        "date_from": "2010",
        "date_to": "2025-12-31",
        "date_field": "published",
        "docs": ["zh/zh07_pipl.txt"],
        "tuned": False,
    }
    hits = client.get("/search", params=params).json()
    assert hits and {h["doc_id"] for h in hits} == {"zh/zh07_pipl.txt"}


def test_quote_documents_facets_health_and_openapi(client: TestClient) -> None:
    report = client.get("/quote", params={"text": "电子商务经营者应当依法办理市场主体登记"}).json()
    TypeAdapter(shapes.QuoteJSON).validate_python(report, strict=True)
    assert report["verdict"] == "verbatim" and report["matches"][0]["doc_id"] == "zh/zh01_ecommerce_law.txt"
    docs = TypeAdapter(list[shapes.DocumentJSON]).validate_python(client.get("/documents").json(), strict=True)
    facets = TypeAdapter(shapes.FacetsJSON).validate_python(client.get("/facets").json(), strict=True)
    assert facets["documents"] == len(docs) == 40
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["passages"] > 1000 and "xling" in health["channels"]
    schema = client.get("/openapi.json").json()
    assert {"HitJSON", "QuoteJSON", "DocumentJSON", "ArticleJSON", "ReferencesJSON"} <= set(
        schema["components"]["schemas"]
    )
    assert {"/search", "/quote", "/documents", "/facets", "/article", "/references", "/versions", "/health"} <= set(
        schema["paths"]
    )


def test_article_with_neighbours_by_number_and_by_chunk_id(client: TestClient) -> None:
    r = client.get("/article", params={"doc_id": "zh/zh03_advertising_law.txt", "article": "第九条", "neighbours": 2})
    art = TypeAdapter(ArticleJSON).validate_python(r.json(), strict=True)
    assert art["article"] == "第九条" and art["citation"] == "《中华人民共和国广告法》第九条"
    assert [p["article"] for p in art["before"]] == ["第七条", "第八条"]
    assert [p["article"] for p in art["after"]] == ["第十条", "第十一条"]
    same = client.get("/article", params={"chunk_id": art["passages"][0]["chunk_id"], "neighbours": 2}).json()
    assert same == art
    assert (
        client.get("/article", params={"doc_id": "zh/zh03_advertising_law.txt", "article": "9"}).json()["article"]
        == "第九条"
    )


def test_references_made_by_and_to_a_passage(client: TestClient) -> None:
    made = TypeAdapter(ReferencesJSON).validate_python(
        client.get("/references", params={"chunk_id": "zh/zh03_advertising_law.txt#57"}).json(), strict=True
    )
    targets = {x["target"]["chunk_id"] for x in made["made"] if x["target"]}
    assert "zh/zh03_advertising_law.txt#9" in targets
    cited = client.get("/references", params={"chunk_id": "zh/zh03_advertising_law.txt#9"}).json()
    citing = {c["passage"]["chunk_id"] for c in cited["cited_by"]}
    assert "zh/zh03_advertising_law.txt#57" in citing
    assert all(c["ref"]["target"]["article_no"] == 9 for c in cited["cited_by"])


def test_versions_of_a_law(client: TestClient) -> None:
    v = TypeAdapter(VersionsJSON).validate_python(
        client.get("/versions", params={"doc_id": "zh/zh07_pipl.txt"}).json(), strict=True
    )
    assert [x["doc_id"] for x in v["versions"]] == ["zh/zh07_pipl.txt"]
    assert v["versions"][0]["published"]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "words"),
    [
        ("get", "/search", {"params": {"q": ""}}, 422, ("q",)),
        ("get", "/search", {"params": {"q": "   "}}, 400, ("empty query",)),
        ("get", "/search", {"params": {"q": "问" * 3000}}, 422, ("q", "2000")),
        ("post", "/search", {"json": {"q": "问" * 34_000}}, 413, ("at most",)),  # a 100 kB question
        ("get", "/search", {"params": {"q": "x", "k": 1_000_000}}, 422, ("k", "100")),
        ("get", "/search", {"params": {"q": "x", "k": 0}}, 422, ("k",)),
        ("get", "/search", {"params": {"q": "x", "colour": "red"}}, 422, ("unknown parameter 'colour'",)),
        ("post", "/search", {"json": {"q": "x", "level": "法律"}}, 422, ("unknown parameter 'level'",)),
        ("get", "/search", {"params": {"q": "x", "levels": "宪法性文件"}}, 400, ("unknown level", "法律")),
        ("get", "/search", {"params": {"q": "x", "as_of": "2024-13-45"}}, 400, ("2024-13-45",)),
        ("get", "/search", {"params": {"q": "x", "mode": "fuzzy"}}, 422, ("mode",)),
        (
            "post",
            "/search",
            {"content": b'{"q": "x",', "headers": {"content-type": "application/json"}},
            400,
            ("not valid JSON",),
        ),
        ("post", "/quote", {"json": {"text": ""}}, 422, ("text",)),
        ("get", "/article", {"params": {"doc_id": "zh/zh07_pipl.txt", "article": "第九千条"}}, 400, ("no article",)),
        (
            "get",
            "/article",
            {"params": {"doc_id": "zh/zh07_pipl.txt", "article": "abc"}},
            400,
            ("not an article number",),
        ),
        ("get", "/article", {"params": {"doc_id": "nope.txt", "article": "1"}}, 400, ("no such document",)),
        ("get", "/article", {"params": {}}, 400, ("chunk_id",)),
        ("get", "/references", {"params": {"chunk_id": "zh/zh07_pipl.txt"}}, 400, ("not a chunk id",)),
        ("get", "/references", {"params": {"chunk_id": "zh/zh07_pipl.txt#99999"}}, 400, ("no passage",)),
        ("get", "/versions", {"params": {"doc_id": "nope.txt"}}, 400, ("no such document",)),
        ("get", "/no-such-endpoint", {}, 404, ("no endpoint",)),
    ],
)
def test_bad_requests_get_one_line_problems(
    client: TestClient, method: str, url: str, kwargs: dict[str, Any], status: int, words: tuple[str, ...]
) -> None:
    assert_problem(getattr(client, method)(url, **kwargs), status, *words)


def test_api_key_protects_every_endpoint(service: Service) -> None:
    app = create_app(service, HttpSettings(guard=GuardSettings(api_key="s3cret"), mcp=False))
    with TestClient(app) as c:
        for path in ("/health", "/search?q=x", "/openapi.json", "/documents"):
            assert_problem(c.get(path), 401, "Authorization: Bearer")
            assert_problem(c.get(path, headers={"authorization": "Bearer wrong"}), 401)
        assert c.get("/health", headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_cors_is_off_unless_configured(service: Service, client: TestClient) -> None:
    origin = {"origin": "https://portal.example.gov.cn"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    app = create_app(service, HttpSettings(cors_origins=("https://portal.example.gov.cn",), mcp=False))
    with TestClient(app) as c:
        assert c.get("/health", headers=origin).headers["access-control-allow-origin"] == origin["origin"]


def test_access_log_is_one_json_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kb.serve.access"):
        client.get("/search", params={"q": "x", "k": 1_000_000})
    line = json.loads(next(r.getMessage() for r in caplog.records if r.name == "kb.serve.access"))
    assert line["path"] == "/search" and line["status"] == 422 and line["ms"] >= 0 and "q" not in line


def test_readme_curl_output_is_what_the_api_answers_today(client: TestClient) -> None:
    """The README shows one `curl` call with its output; it must be what the API returns now."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## HTTP API and MCP server") :]
    shown = json.loads(section.split("```json\n", 1)[1].split("\n```", 1)[0])
    got = client.get(
        "/search", params={"q": "seven-day no-reason return of goods bought online", "levels": ["法律"], "k": 1}
    )
    assert got.json() == shown


@pytest.mark.parametrize("command", ["serve", "mcp"])
def test_servers_refuse_a_missing_index_with_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli([command, "--index", str(tmp_path / "none")]) == 1
    out, err = capsys.readouterr()
    assert "serving" not in out and err.strip().count("\n") == 0
    assert f"no index at {tmp_path / 'none'}: run `python -m kb build" in err
