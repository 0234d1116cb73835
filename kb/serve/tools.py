"""The MCP tools for LLM agents (official `mcp` SDK): search, get_article, check_quote, list_documents,
references. Each returns the JSON shape the HTTP API returns (kb.serve.shapes), so every passage carries its
citation string, doc_id, article, page and character offsets: an agent can quote it and a person can check it.

`python -m kb mcp` serves them over stdio; `python -m kb serve` serves them over streamable HTTP at /mcp.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from kb import config
from kb.errors import KbError
from kb.search.contract import SearchOptions
from kb.serve import shapes
from kb.serve.service import MAX_K, MAX_QUOTE_K, Service
from kb.serve.shapes import ArticleJSON, ReferencesJSON

T = TypeVar("T")

INSTRUCTIONS = (
    "Policy KB: Chinese laws and regulations and English commentary. Search returns passages with a citation "
    "string (《title》第X条, p. N), doc_id, article, page and char_start/char_end in the document: quote the "
    "passage text and give its citation. check_quote tells whether a sentence is verbatim in a document."
)


def _answer(call: Callable[[], T]) -> T:
    """A library refusal as the tool's error message (one line that says what to change)."""
    try:
        return call()
    except KbError as exc:
        raise ToolError(str(exc)) from None


def mcp_server(service: Service) -> MCPServer:
    """The MCP server with Policy KB's tools over one opened index."""
    server = MCPServer("policy-kb", instructions=INSTRUCTIONS, version=config.VERSION, log_level="WARNING")

    @server.tool()
    def search(
        query: Annotated[str, Field(description="the question, in Chinese or English", max_length=2000)],
        k: Annotated[int, Field(ge=1, le=MAX_K, description="passages to return")] = 10,
        lang: Annotated[Literal["zh", "en"] | None, Field(description="only passages in this language")] = None,
        levels: Annotated[list[str] | None, Field(description="法律, 行政法规, 部门规章, 司法解释 ...")] = None,
        issuers: Annotated[list[str] | None, Field(description="issuing body contains")] = None,
        validity: Annotated[list[str] | None, Field(description="现行有效, 已修改, 已废止, 尚未生效")] = None,
        as_of: Annotated[str | None, Field(description="in force on this date (YYYY-MM-DD)")] = None,
        date_from: Annotated[str | None, Field(description="dated on or after (YYYY, YYYY-MM or YYYY-MM-DD)")] = None,
        date_to: Annotated[str | None, Field(description="dated on or before")] = None,
        date_field: Literal["published", "effective"] = "published",
        docs: Annotated[list[str] | None, Field(description="only these doc_ids")] = None,
        mode: Literal["hybrid", "keyword", "semantic"] = "hybrid",
        include_repealed: bool = False,
        tuned: Annotated[
            bool | None,
            Field(description="questions through the question tower trained on legal and scientific questions"),
        ] = None,
        rerank: Annotated[
            bool | None, Field(description="re-order the first passages with the trained reranker")
        ] = None,
    ) -> list[shapes.HitJSON]:
        """Search the policy documents; each hit has citation, doc_id, article, page, char offsets and text."""
        options: SearchOptions = {
            "lang": lang,
            "levels": levels,
            "issuers": issuers,
            "validity": validity,
            "as_of": as_of,
            "date_from": date_from,
            "date_to": date_to,
            "date_field": date_field,
            "docs": docs,
            "mode": mode,
            "include_repealed": include_repealed,
            "tuned": tuned,
            "rerank": rerank,
        }
        return _answer(lambda: service.search(query, k, options))

    @server.tool()
    def get_article(
        doc_id: Annotated[str | None, Field(description="the document (a hit's doc_id)")] = None,
        article: Annotated[str | None, Field(description="第十条, 十 or 10")] = None,
        chunk_id: Annotated[str | None, Field(description="or a passage id doc_id#N from a hit")] = None,
        neighbours: Annotated[int, Field(ge=0, le=5, description="passages before and after")] = 1,
    ) -> ArticleJSON:
        """The full text of one article with the passages around it, cited."""
        return _answer(lambda: service.article(doc_id, article, chunk_id, neighbours))

    @server.tool()
    def check_quote(
        text: Annotated[str, Field(description="the quoted sentence(s)", max_length=5000)],
        k: Annotated[int, Field(ge=1, le=MAX_QUOTE_K)] = 5,
    ) -> shapes.QuoteJSON:
        """Is this text verbatim (or altered, or with omissions) in an indexed document, and where."""
        return _answer(lambda: service.quote(text, k))

    @server.tool()
    def list_documents(
        level: Annotated[str | None, Field(description="only this level (法律, 行政法规 ...)")] = None,
        title_contains: Annotated[str | None, Field(description="only titles containing this")] = None,
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
    ) -> list[shapes.DocumentJSON]:
        """Indexed documents with level, issuer, dates, validity and versions."""
        rows = _answer(service.documents)
        return [
            r
            for r in rows
            if (level is None or r["meta"]["level"] == level) and (not title_contains or title_contains in r["title"])
        ][:limit]

    @server.tool()
    def references(
        chunk_id: Annotated[str, Field(description="a passage id doc_id#N from a hit")],
    ) -> ReferencesJSON:
        """The articles a passage cites (resolved to passages) and the passages that cite its article."""
        return _answer(lambda: service.references(chunk_id))

    return server
