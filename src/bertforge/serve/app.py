"""The HTTP server: routes over a served model, its batching queue and its metrics.

``create_app(model, settings)`` builds the FastAPI app. Each model route (``POST /embed`` ...) checks its
body (``bodies.BODIES``), turns it into rows (``ServedModel.prepare``), queues them (``Batcher``), waits
for them within the request's deadline while watching for the client going away, and answers. Errors are
JSON, ``{"error": "...", "field": ...}``: 400 a route the model does not serve, 401 a missing or wrong API
key, 413 an input past a limit, 422 a body or field that cannot be read, 429 a full queue (with
Retry-After), 503 while draining, 504 past the deadline.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bertforge import __version__
from bertforge.serve.batcher import Batcher, Closed, QueueFull
from bertforge.serve.bodies import BODIES, MAX_BODY_BYTES, RequestError, parse_body
from bertforge.serve.metrics import Metrics
from bertforge.serve.models import MAX_ATTENTION_VALUES, ROUTES, ServedModel, Work
from bertforge.serve.settings import ServeSettings

logger = logging.getLogger("bertforge.serve")

PAGE_DIR = Path(__file__).parent / "page"
VIZ_DIR = Path(__file__).resolve().parents[1] / "viz"
STATIC = {"app.js": PAGE_DIR, "style.css": PAGE_DIR, "attention.js": VIZ_DIR, "attention.css": VIZ_DIR}
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
OFF_LOOP_CHARS = 50_000  # a request with more text than this is tokenized in a thread
TIMEOUT_HEADER = "x-timeout-ms"


def error_response(status: int, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def create_app(model: ServedModel, settings: ServeSettings, executor: ThreadPoolExecutor | None = None) -> FastAPI:
    """The server of ``model`` under ``settings`` (its batching queue starts and drains with the app); the
    model runs in ``executor``, the thread that loaded it (``batcher.model_thread``), or in a new one."""
    metrics = Metrics()
    batcher = Batcher(model.run, max_batch_tokens=settings.max_batch_tokens, max_wait_ms=settings.max_wait_ms,
                      max_pending=settings.max_concurrent, on_batch=metrics.batch, on_depth=metrics.queue_depth.set,
                      executor=executor)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.close(timeout=settings.timeout)

    app = FastAPI(title="bertforge", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"Serving {model.path.name} (task: {model.task_name}). Model routes take "
                              "`{\"inputs\": one input or a list}`; a list is answered with a list.")
    app.state.model, app.state.batcher, app.state.metrics, app.state.settings = model, batcher, metrics, settings

    def limits(parsed):
        truncate = parsed.options.get("truncate")
        return model.limits(settings.max_input_tokens, settings.truncate if truncate is None else truncate)

    async def handle(request: Request, route: str) -> Response:
        timeout = request_timeout(request, settings.timeout)
        deadline = time.monotonic() + timeout
        if route not in model.routes:
            raise RequestError(400, model.refusal(route))
        parsed = BODIES[route].parse(parse_body(await read_body(request)), settings.max_inputs)
        if parsed.chars > OFF_LOOP_CHARS:  # tokenized off the loop
            prepared = await asyncio.to_thread(model.prepare, route, parsed, limits(parsed))
        else:
            prepared = model.prepare(route, parsed, limits(parsed))
        if isinstance(prepared, Work):
            outputs = await run_job(request, batcher, prepared, deadline, timeout)
            if outputs is None:  # the client went away: nobody reads this
                return Response(status_code=499)
            result = prepared.finish(outputs)
        else:
            result = prepared  # answered without the model (tokenize)
        metrics.inputs.labels(route).inc(len(parsed.inputs))
        return JSONResponse(result if route == "embed" or not parsed.single else result[0])

    for route in ROUTES:
        body = BODIES[route]
        app.add_api_route(f"/{route}", _handler(handle, route), methods=["POST"], name=route, summary=body.summary,
                          tags=["model"], openapi_extra=_request_doc(body.schema(settings.max_inputs), body.example,
                                                                     route in model.routes))

    @app.get("/health", tags=["server"], summary="200 while the server takes requests (no API key needed)")
    async def health() -> JSONResponse:
        if batcher.closing:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok", "queue_depth": batcher.depth})

    @app.get("/info", tags=["server"], summary="The model, its task and labels, the routes it serves, the limits")
    async def info() -> JSONResponse:
        lim = model.limits(settings.max_input_tokens, settings.truncate)
        return JSONResponse({**model.info(), "version": __version__, "limits": {
            "max_input_tokens": lim.tokens, "max_long_input_tokens": lim.long_tokens,
            "window_tokens": lim.window_tokens,
            "max_inputs": settings.max_inputs, "max_batch_tokens": settings.max_batch_tokens,
            "batching": settings.batching, "max_wait_ms": settings.max_wait_ms,
            "max_concurrent": settings.max_concurrent, "timeout_s": settings.timeout, "truncate": settings.truncate,
            "max_attention_values": MAX_ATTENTION_VALUES}})

    @app.get("/metrics", tags=["server"], summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((PAGE_DIR / "index.html").read_bytes())

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise RequestError(404, f"no static file {name!r}")
        return Response((STATIC[name] / name).read_bytes(), media_type=CONTENT_TYPES[Path(name).suffix],
                        headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    @app.exception_handler(RequestError)
    async def request_error(request: Request, e: RequestError) -> JSONResponse:
        return error_response(e.status, e.message, e.field, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = f"no route {request.url.path}" if e.status_code == 404 else str(e.detail)
        return error_response(e.status_code, message, None, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return error_response(422, first.get("msg", "invalid request"), where)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        logger.exception("internal error on %s", request.url.path)
        return error_response(500, f"internal error: {type(e).__name__}: {e}")

    app.add_middleware(Guard, metrics=metrics, api_key=settings.api_key)
    return app


def _handler(handle, route: str):
    async def endpoint(request: Request) -> Response:
        return await handle(request, route)

    endpoint.__name__ = route.replace("-", "_")
    return endpoint


def request_timeout(request: Request, default: float) -> float:
    """The server's timeout, or less when the request asks for it (X-Timeout-Ms)."""
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return default
    try:
        ms = float(raw)
    except ValueError:
        ms = float("nan")
    if not ms > 0:
        raise RequestError(422, f"must be a positive number of milliseconds, got {raw!r}", "X-Timeout-Ms")
    return min(default, ms / 1000)


async def read_body(request: Request) -> bytes:
    """The body, refused (413) past MAX_BODY_BYTES before it is all read."""
    limit = f"the server's limit of {MAX_BODY_BYTES:,} bytes ({MAX_BODY_BYTES / 2**20:g} MiB)"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestError(413, f"the body is {int(declared):,} bytes, more than {limit}", "body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestError(413, f"the body is more than {limit}", "body")
        chunks.append(chunk)
    return b"".join(chunks)


async def run_job(request: Request, batcher: Batcher, work: Work, deadline: float, timeout: float) -> list | None:
    """The outputs of a request's rows; None if the client went away first. 429, 503 or 504 otherwise."""
    try:
        job = batcher.submit(work.op, work.rows, work.lengths)
    except QueueFull as e:
        raise RequestError(429, f"the server is busy ({e}); retry shortly", None, {"Retry-After": "1"}) from None
    except Closed as e:
        raise RequestError(503, str(e), None, {"Retry-After": "5"}) from None
    gone = asyncio.ensure_future(client_gone(request))
    try:
        remaining = max(0.0, deadline - time.monotonic())
        done, _ = await asyncio.wait({job.future, gone}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        if job.future in done:
            return job.future.result()
        if gone in done:
            return None
        raise RequestError(504, f"no answer within {timeout:g} s ({batcher.depth} requests waiting or running)")
    finally:
        gone.cancel()
        if not job.future.done():
            batcher.cancel(job)


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body is read already, so the next message says so)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


class Guard:
    """ASGI middleware: the API key (every route but /health) and the request metrics."""

    PATHS = {f"/{r}" for r in ROUTES} | {"/health", "/info", "/metrics", "/", "/docs", "/openapi.json"}

    def __init__(self, app, metrics: Metrics, api_key: str | None):
        self.app, self.metrics = app, metrics
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.PATHS else "/static" if path.startswith("/static/") else "other"
        start, status = time.perf_counter(), [500]

        async def observed_send(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if self.expected is not None and path != "/health" and not self._authorized(scope):
                reply = error_response(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'",
                                       "Authorization", {"WWW-Authenticate": "Bearer"})
                await reply(scope, receive, observed_send)
                return
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.request(route, status[0], time.perf_counter() - start)

    def _authorized(self, scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        return hmac.compare_digest(given, self.expected)


def _request_doc(schema: dict[str, Any], example: dict[str, Any], served: bool) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, "example": example}}},
            "responses": {"400": {"description": "the model does not serve this route"
                                  + ("" if served else " (this model: it does not)")},
                          "413": {"description": "an input past a limit (see /info)"},
                          "422": {"description": "a body or field that cannot be read; `field` names it"},
                          "429": {"description": "the queue is full; retry after Retry-After seconds"},
                          "504": {"description": "no answer within the deadline"}}}


def docs_page(spec: dict[str, Any]) -> str:
    """The API reference as one HTML page built from the OpenAPI document (no scripts, nothing fetched)."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec['info']['title'])} API</title>"
             "<link rel='icon' href='data:,'><link rel='stylesheet' href='/static/style.css'></head>"
             "<body class='docs'><main><h1>bertforge API</h1>"
             f"<p>{html.escape(spec['info'].get('description', ''))}</p>"
             "<p>The OpenAPI document: <a href='/openapi.json'>/openapi.json</a>. The playground: <a href='/'>/</a>."
             "</p>"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            parts.append(f"<section class='card'><h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                         f"<p>{html.escape(op.get('summary', ''))}</p>")
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                parts.append("<h3>Example body</h3><pre>" + html.escape(json.dumps(content["example"], indent=2))
                             + "</pre><details><summary>Body schema</summary><pre>"
                             + html.escape(json.dumps(content["schema"], indent=2)) + "</pre></details>")
            codes = ", ".join(f"{code} {html.escape(r.get('description', ''))}" for code, r in op["responses"].items())
            parts.append(f"<p class='muted'>Responses: {codes}</p></section>")
    return "".join(parts) + "</main></body></html>"
