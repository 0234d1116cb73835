"""The HTTP API: FastAPI routes over kb.serve.service, the JSON shapes of kb.serve.shapes, problem+json errors,
and the MCP tools over streamable HTTP at /mcp (kb.serve.tools). `python -m kb serve` runs it (kb.serve.run)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Literal, cast

import anyio.to_thread
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from kb import config
from kb.errors import KbError, QueryError
from kb.search.base import MAX_QUERY_CHARS
from kb.search.contract import SearchOptions
from kb.serve import shapes
from kb.serve.balance import Balance, Table
from kb.serve.guard import PROBLEM_TYPE, Guard, GuardSettings, problem
from kb.serve.service import MAX_K, MAX_NEIGHBOURS, MAX_QUOTE_K, Service
from kb.serve.shapes import ArticleJSON, HealthJSON, ReferencesJSON, VersionsJSON

log = logging.getLogger(__name__)

MAX_QUOTE_CHARS = 5000


@dataclass(frozen=True)
class HttpSettings:
    guard: GuardSettings = field(default_factory=GuardSettings)
    cors_origins: tuple[str, ...] = ()  # KB_CORS_ORIGINS; empty: no CORS headers at all
    host: str = "127.0.0.1"  # the MCP endpoint refuses other Host headers when bound to loopback
    threads: int = 4  # requests computed at once per worker; more only queue on the GIL and the core
    mcp: bool = True
    workers: int = 1  # worker processes of the server
    balance: Path | None = None  # the workers' shared connection table (kb.serve.balance), when workers > 1


class SearchQuery(BaseModel):
    """A search: the question and every filter of `python -m kb search` (as GET query parameters or a JSON body)."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the question, Chinese or English")
    k: int = Field(10, ge=1, le=MAX_K)
    lang: Literal["zh", "en"] | None = None
    docs: list[str] | None = Field(None, description="keep only these doc_ids (--doc)")
    mode: Literal["hybrid", "keyword", "semantic"] = "hybrid"
    include_repealed: bool = False
    levels: list[str] | None = Field(None, description="法律, 行政法规, 部门规章, ... (--level)")
    issuers: list[str] | None = Field(None, description="issuing body contains (--issuer)")
    validity: list[str] | None = Field(None, description="现行有效, 已修改, 已废止, 尚未生效 (--validity)")
    as_of: str | None = Field(None, description="in force on this date, YYYY-MM-DD (--as-of)")
    date_from: str | None = Field(None, description="dated on or after (--from)")
    date_to: str | None = Field(None, description="dated on or before (--to)")
    date_field: Literal["published", "effective"] = "published"
    tuned: bool | None = Field(
        None, description="questions through the question tower (--tuned on|off); default: on (KB_TUNED)"
    )
    rerank: bool | None = Field(
        None, description="re-order the first passages with the trained reranker (--rerank on|off); default: on"
    )

    def options(self) -> SearchOptions:
        """Every field but the question and k, by the names the CLI and the backends use."""
        return cast(SearchOptions, self.model_dump(exclude={"q", "k"}))


class QuoteQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_QUOTE_CHARS, description="the quoted sentence(s)")
    k: int = Field(5, ge=1, le=MAX_QUOTE_K)


class ArticleQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_id: str | None = None
    article: str | None = Field(None, description="第十条, 十 or 10")
    chunk_id: str | None = Field(None, description="a passage of the article (doc_id#N, as hits carry it)")
    neighbours: int = Field(1, ge=0, le=MAX_NEIGHBOURS)


def _errors(exc: RequestValidationError) -> str:
    """A validation failure as one line: where, what, and the value sent (shortened)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON: " + str(first.get("ctx", {}).get("error", "parse error"))
    if first.get("type") == "extra_forbidden":
        return f"unknown parameter '{where}'"
    value = repr(first.get("input"))
    value = value if len(value) <= 40 else value[:37] + "..."
    return f"{where or 'request'}: {first.get('msg', 'invalid')} (got {value})"


def _problem(status: int, detail: str) -> Response:
    return Response(problem(status, detail), status_code=status, media_type=PROBLEM_TYPE)


def create_app(service: Service, settings: HttpSettings = HttpSettings()) -> FastAPI:
    """The FastAPI app over an opened index (with the MCP tools at /mcp unless settings.mcp is False)."""
    mcp_server = None
    if settings.mcp:
        from kb.serve.tools import mcp_server as make_mcp

        mcp_server = make_mcp(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        async with contextlib.AsyncExitStack() as stack:
            if mcp_server is not None:
                await stack.enter_async_context(mcp_server.session_manager.run())
            yield
        service.close()

    app = FastAPI(
        title="Policy KB",
        version=config.VERSION,
        description="Cited search over policy documents: every hit carries its citation, doc_id, article, page "
        "and character offsets. Errors are RFC 9457 problem+json.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _problem(422 if exc.errors()[0].get("type") != "json_invalid" else 400, _errors(exc))

    @app.exception_handler(QueryError)
    async def bad_query(request: Request, exc: QueryError) -> Response:
        return _problem(400, str(exc))

    @app.exception_handler(KbError)
    async def index_error(request: Request, exc: KbError) -> Response:
        return _problem(503, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404:
            detail = f"no endpoint {request.url.path}: see /docs for the API"
        return _problem(exc.status_code, detail)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return _problem(500, f"internal error ({type(exc).__name__}); the server log has the details")

    worker = str(os.getpid())

    def respond(body: object) -> Response:
        return JSONResponse(body, headers={"x-kb-generation": service.searcher.generation, "x-kb-worker": worker})

    @app.get("/search", response_model=list[shapes.HitJSON], summary="Search: ranked, cited passages")
    def search_get(query: Annotated[SearchQuery, Query()]) -> Response:
        """The same list as `python -m kb search --json`; list filters repeat (`levels=法律&levels=行政法规`)."""
        return respond(service.search(query.q, query.k, query.options()))

    @app.post("/search", response_model=list[shapes.HitJSON], summary="Search (JSON body)")
    def search_post(query: SearchQuery) -> Response:
        return respond(service.search(query.q, query.k, query.options()))

    @app.get("/quote", response_model=shapes.QuoteJSON, summary="Quote check")
    def quote_get(query: Annotated[QuoteQuery, Query()]) -> Response:
        """Is this text verbatim in the index, and where: the object of `python -m kb quote --json`."""
        return respond(service.quote(query.text, query.k))

    @app.post("/quote", response_model=shapes.QuoteJSON, summary="Quote check (JSON body)")
    def quote_post(query: QuoteQuery) -> Response:
        return respond(service.quote(query.text, query.k))

    @app.get("/documents", response_model=list[shapes.DocumentJSON], summary="Documents with metadata")
    def documents() -> Response:
        """The list of `python -m kb docs --json`."""
        return respond(service.documents())

    @app.get("/facets", response_model=shapes.FacetsJSON, summary="Levels, issuers, validity, dates")
    def facets() -> Response:
        """The object of `python -m kb docs --facets`: what the search filters accept, with document counts."""
        return respond(service.facets())

    @app.get("/article", response_model=ArticleJSON, summary="One article with its neighbours")
    def article(query: Annotated[ArticleQuery, Query()]) -> Response:
        return respond(service.article(query.doc_id, query.article, query.chunk_id, query.neighbours))

    @app.get("/references", response_model=ReferencesJSON, summary="References made by and to a passage")
    def references(chunk_id: Annotated[str, Query(min_length=3, description="doc_id#N")]) -> Response:
        return respond(service.references(chunk_id))

    @app.get("/versions", response_model=VersionsJSON, summary="Versions of a law")
    def versions(doc_id: Annotated[str, Query(min_length=1)]) -> Response:
        return respond(service.versions(doc_id))

    @app.get("/health", response_model=HealthJSON, summary="Liveness and the generation served")
    def health() -> Response:
        return respond(service.health())

    if mcp_server is not None:
        # The MCP endpoint's own route (not a Mount: /mcp answers without a redirect to /mcp/).
        mcp_app = mcp_server.streamable_http_app(
            streamable_http_path="/mcp", stateless_http=True, json_response=True, host=settings.host
        )
        app.router.routes.extend(mcp_app.routes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "mcp-protocol-version"],
        )
    app.add_middleware(Guard, settings=settings.guard)
    if settings.balance is not None and settings.workers > 1:
        try:
            app.add_middleware(Balance, table=Table(settings.balance), workers=settings.workers)
        except OSError as exc:  # the server still serves, its connections as the accepts fall
            log.warning("connections not balanced across the workers (%s): %s", settings.balance, exc)
    return app
