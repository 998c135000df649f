"""The app factory: ``create_app(settings)`` gives a FastAPI app serving the audio API and the page.

The app owns one registry (which models, loaded lazily within a memory budget), one scheduler
(bounded queue, micro-batching, inference in threads) and its metrics. A middleware checks the
API key, the upload size and the content type before any body is parsed, and counts requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, Response, params
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmspeech import __version__
from mmspeech.server.errors import (
    ERROR_RESPONSES,
    APIError,
    BodyTimeout,
    BodyTooLarge,
    error_response,
    install_error_handlers,
)
from mmspeech.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from mmspeech.server.metrics import Metrics, Samples
from mmspeech.server.realtime import router as realtime_router
from mmspeech.server.registry import ALIASES, Loader, ModelRegistry
from mmspeech.server.routes import router
from mmspeech.server.scheduler import Scheduler
from mmspeech.server.settings import ServerSettings

logger = logging.getLogger(__name__)

OPEN_PATHS = ("/health", "/")  # no API key: liveness probes, and the page (which holds no data)


@dataclass(frozen=True)
class BodyPaths:
    """Which POST paths take which body, read from the routes' own parameters."""

    multipart: frozenset[str] = frozenset()  # File/Form parameters
    json: frozenset[str] = frozenset()  # a JSON body model

    @classmethod
    def of(cls, routes: list[BaseRoute]) -> BodyPaths:
        multipart, json = set(), set()
        for route in routes:
            if not isinstance(route, APIRoute) or "POST" not in (route.methods or ()):
                continue
            fields = [param.field_info for param in route.dependant.body_params]
            if any(isinstance(field, params.Form) for field in fields):  # File is a Form
                multipart.add(route.path)
            elif fields:
                json.add(route.path)
        return cls(frozenset(multipart), frozenset(json))


def _flat_routes(app: FastAPI) -> list[BaseRoute]:
    """The app's routes and those of the audio router, each with its own path template
    (FastAPI may keep an included router as one entry of ``app.routes``)."""
    routes = [*router.routes, *app.routes]
    return [route for route in routes if isinstance(getattr(route, "path", None), str)]


def _endpoint(request: Request, routes: list[BaseRoute]) -> str:
    """The route template a request reached (``/v1/models/{name}/languages``), for metric
    labels; "other" for paths no route serves."""
    for route in routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            return str(getattr(route, "path", "other"))
    return "other"


@dataclass
class ServerState:
    """What the endpoints share (``request.app.state.mmspeech``)."""

    settings: ServerSettings
    registry: ModelRegistry
    scheduler: Scheduler
    metrics: Metrics
    started_at: float
    body_paths: BodyPaths = BodyPaths()
    routes: list[BaseRoute] = field(default_factory=list)


def create_app(settings: ServerSettings, loaders: Mapping[str, Loader] | None = None) -> FastAPI:
    """A FastAPI app serving ``settings``' models.

    Args:
        settings: models, limits and security settings.
        loaders: task -> ``(reference, device) -> model``; defaults to the high-level API's
            ``load_asr``/``load_lid``/``load_tts``/``load_speech2text``.
    """
    metrics = Metrics()
    state = ServerState(
        settings=settings,
        registry=ModelRegistry(settings, loaders),
        scheduler=Scheduler(
            max_queue=settings.max_queue,
            max_batch=settings.max_batch,
            batch_wait=settings.batch_wait,
            workers=settings.workers,
            retry_after=settings.retry_after,
            metrics=metrics,
        ),
        metrics=metrics,
        started_at=time.time(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.scheduler.start()
        try:
            yield
        finally:
            await state.scheduler.stop()

    app = FastAPI(
        title="mmspeech",
        version=__version__,
        description="MMS speech recognition, language identification and text to speech behind "
        "the OpenAI audio API.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.mmspeech = state
    install_error_handlers(app)
    # inside the guard, so that its 413/408 reach the endpoint's body parsing unwrapped
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes, timeout=settings.body_timeout)
    app.middleware("http")(_guard(state))
    app.add_middleware(  # outermost: cancels everything inside when the client has gone
        CancelOnDisconnect,
        on_cancel=lambda: metrics.count("mmspeech_rejected_total", {"reason": "client_gone"}),
    )
    app.include_router(router)
    app.include_router(realtime_router)  # the WebSocket: checks the API key itself
    _add_service_routes(app, state)
    state.routes = _flat_routes(app)
    state.body_paths = BodyPaths.of(state.routes)
    if settings.api_key:
        app.openapi = partial(_openapi_with_bearer, app)  # type: ignore[method-assign]
    return app


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document saying that every operation but the open ones needs a Bearer key."""
    if app.openapi_schema is None:
        document = FastAPI.openapi(app)
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearerAuth"] = {"type": "http", "scheme": "bearer"}
        document["security"] = [{"bearerAuth": []}]
        for path in OPEN_PATHS:
            for operation in document["paths"].get(path, {}).values():
                operation["security"] = []
        app.openapi_schema = document
    return app.openapi_schema


class BodyLimit:
    """ASGI middleware: a request body must stay within ``limit`` bytes (413) and arrive within
    ``timeout`` seconds of the first read (408, connection closed).

    The Content-Length check in the guard refuses honest large requests before any byte is read;
    this catches chunked bodies and wrong lengths while they stream in, and clients that stall
    mid-body (each would hold a connection and a spooled upload for as long as it liked).
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float):
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        deadline: float | None = None
        complete = False

        async def limited() -> Message:
            nonlocal received, deadline, complete
            if complete:  # after the body: only a disconnect can come, whenever it comes
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)


class CancelOnDisconnect:
    """ASGI middleware: when a client disconnects before its response is complete, cancel the
    handling of its request, so that its queued job is withdrawn and never runs.

    Once the request body has been read, the only message left to receive is the disconnect;
    a watcher waits for it while the request is being handled.
    """

    def __init__(self, app: ASGIApp, on_cancel: Callable[[], None]):
        self.app = app
        self.on_cancel = on_cancel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = asyncio.Event()
        disconnected = asyncio.Event()

        async def tracked() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set()
            elif not message.get("more_body", False):
                body_read.set()
            return message

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        responded = False

        async def sending(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                responded = True
            await send(message)

        handling = asyncio.ensure_future(self.app(scope, tracked, sending))
        watcher = asyncio.ensure_future(watch())
        gone = asyncio.ensure_future(disconnected.wait())
        try:
            await asyncio.wait({handling, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not handling.done() and not responded:
                handling.cancel()
                self.on_cancel()
                logger.info("client left before its response: %s cancelled", scope["path"])
            with contextlib.suppress(asyncio.CancelledError):
                await handling
        finally:
            for task in (watcher, gone, handling):
                task.cancel()


def _guard(
    state: ServerState,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    settings = state.settings
    expected = settings.api_key.encode() if settings.api_key else None

    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        path = request.url.path
        endpoint = _endpoint(request, state.routes)
        try:
            _check(request, path, expected, settings, state.body_paths)
            response = await call_next(request)
        except APIError as error:
            response = error_response(error)
        state.metrics.count(
            "mmspeech_requests_total",
            {"endpoint": endpoint, "method": request.method, "status": str(response.status_code)},
        )
        state.metrics.observe(
            "mmspeech_request_duration_seconds",
            time.perf_counter() - started,
            {"endpoint": endpoint},
        )
        return response

    return guard


def _check(
    request: Request,
    path: str,
    expected: bytes | None,
    settings: ServerSettings,
    body_paths: BodyPaths,
) -> None:
    """Refuse a request before its body is read: API key, size, content type."""
    if expected is not None and path not in OPEN_PATHS:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(given, expected):
            raise APIError(
                401,
                "Missing or wrong API key: send 'Authorization: Bearer <key>' with the key this "
                "server was started with."
                if given
                else "Missing API key: send "
                "'Authorization: Bearer <key>' with the key this server was started with.",
                "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
    if request.method != "POST":
        return
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > settings.max_upload_bytes:
        raise APIError(
            413,
            f"The request is {int(length) / 1e6:.1f} MB; this server accepts at most "
            f"{settings.max_upload_bytes / 1e6:.1f} MB. Send a shorter or compressed file.",
            "request_too_large",
            "file",
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if path in body_paths.multipart and content_type != "multipart/form-data":
        raise APIError(
            415,
            f"Expected a multipart/form-data upload (a 'file' part and form fields); got "
            f"{content_type or 'no content type'}.",
            "unsupported_media_type",
        )
    if path in body_paths.json and content_type != "application/json":
        raise APIError(
            415,
            f"Expected a JSON body (Content-Type: application/json); got "
            f"{content_type or 'no content type'}.",
            "unsupported_media_type",
        )


def _add_service_routes(app: FastAPI, state: ServerState) -> None:
    """/health, /metrics, /v1/models and the page."""

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        """Liveness: always 200 while the server runs (no API key needed)."""
        return {
            "status": "ok",
            "version": __version__,
            "uptime_seconds": round(time.time() - state.started_at, 3),
            "loaded_models": state.registry.loaded_names(),
            "queue_depth": state.scheduler.depth,
        }

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus text: requests, latencies, queue depth, batch sizes, loaded models."""
        registry, scheduler = state.registry, state.scheduler
        gauges: dict[str, tuple[str, Samples]] = {
            "mmspeech_queue_depth": (
                "Jobs waiting for or in inference.",
                lambda: [({}, scheduler.depth)],
            ),
            "mmspeech_model_loaded": (
                "1 for each loaded model.",
                lambda: [({"model": name}, 1) for name in registry.loaded_names()],
            ),
            "mmspeech_loaded_model_bytes": (
                "Estimated bytes of the loaded models.",
                lambda: [({}, registry.loaded_bytes())],
            ),
            "mmspeech_model_loads": ("Models loaded so far.", lambda: [({}, registry.loads)]),
            "mmspeech_model_evictions": (
                "Models dropped to stay within the memory budget.",
                lambda: [({}, registry.evictions)],
            ),
        }
        return PlainTextResponse(state.metrics.render(gauges), media_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/models", tags=["models"])
    async def models() -> dict[str, Any]:
        """The models this server may load (OpenAI list shape, plus ``task`` and ``loaded``)."""
        registry = state.registry
        loaded = set(registry.loaded_names())
        created = int(state.started_at)
        data = [
            {
                "id": entry.name,
                "object": "model",
                "created": created,
                "owned_by": "mmspeech",
                "task": entry.kind,
                "loaded": entry.name in loaded,
                "demo": registry.runs_demo(entry),  # a bundled toy checkpoint, not real MMS
            }
            for entry in registry.entries()
            if registry.can_load(entry)  # offline, an uncached hub model is not listed
        ]
        listed = {item["id"]: item for item in data}
        for alias, kind in ALIASES.items():
            default = registry.default(kind)
            if default in listed:
                data.append(
                    {
                        **listed[default],
                        "id": alias,
                        "alias_of": default,
                    }
                )
        return {"object": "list", "data": data}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("mmspeech.server").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)
