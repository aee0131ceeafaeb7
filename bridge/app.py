"""HTTP routes and the application's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from bridge import cursor as cursors
from bridge.auth import AuthError, build_authorizer
from bridge.catchup import CatchUps, Since, parse_since
from bridge.config import Settings
from bridge.cors import cors_options
from bridge.hub import AHEAD_WAIT_SECONDS, CloseReason, Hub
from bridge.kafkaclient import client_options
from bridge.metrics import create_registry, exposition
from bridge.source import KafkaSource
from bridge.stream import EventStream


class JSON(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, error: str, message: str, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON({"error": error, "message": message}, status_code=status, headers=headers)


def create_app(settings: Settings) -> FastAPI:
    authorizer = build_authorizer(settings)  # reads the key files: a bad one fails start-up
    # An id ahead of this replica waits for it at least two looks for new partitions long.
    ahead_wait = max(AHEAD_WAIT_SECONDS, 2 * settings.metadata_interval + 1)
    hub = Hub(ring_records=settings.ring_records, ring_bytes=settings.ring_bytes, type_header=settings.type_header,
              ahead_wait=ahead_wait)  # fmt: skip
    kafka = client_options(settings)  # reads the password and TLS files: a bad one fails start-up
    source = KafkaSource(settings, hub, kafka)
    catchups = CatchUps(settings, kafka)
    registry = create_registry(hub, source, catchups)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        source.start()
        try:
            yield
        finally:
            await source.stop()

    app = FastAPI(title="kafka-sse-bridge", lifespan=lifespan, default_response_class=JSON)
    if (cors := cors_options(settings)) is not None:
        app.add_middleware(CORSMiddleware, **cors)

    def end_streams(reason: CloseReason) -> None:
        hub.close_all(reason)
        catchups.close_all(reason)

    app.state.end_streams = end_streams
    index_page = resources.files("bridge").joinpath("static/index.html").read_text()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSON:
        return error_response(error.status_code, "http_error", str(error.detail), headers=error.headers)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, error: AuthError) -> JSON:
        return error_response(error.status, error.error, error.message, {"WWW-Authenticate": error.challenge})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSON:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        return error_response(400, "bad_request", f"{where}: {problem['msg']}")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(index_page)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Kafka unreachable or topics not yet assigned"}})
    async def readyz() -> JSON:
        body = {"ready": source.ready, "kafka_reachable": source.reachable, "assigned": source.assigned}
        return JSON(body, status_code=200 if source.ready else 503)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics(accept: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus metrics (OpenMetrics if the scraper asks for it)."""
        # async, so the collector reads the hub on the event loop thread, where it changes
        body, content_type = exposition(registry, accept)
        return Response(body, media_type=content_type)

    @app.get("/topics")
    async def topics() -> dict[str, list[dict[str, object]]]:
        """The served topics, with the bridge's current position in each partition."""
        served = [{"topic": name, "partitions": len(channel.position), "position": channel.position}
                  for name, channel in sorted(hub.channels.items())]  # fmt: skip
        return {"topics": served}

    @app.get(
        "/sse/{topic}",
        response_class=EventStream,
        response_model=None,
        responses={200: {"content": {"text/event-stream": {}}}, 400: {}, 401: {}, 403: {}, 404: {}, 503: {}},
    )
    async def stream(
        request: Request,
        topic: str,
        last_event_id: Annotated[str | None, Header(max_length=cursors.MAX_CURSOR_LENGTH)] = None,
        last_event_id_query: Annotated[
            str | None, Query(alias="lastEventId", max_length=cursors.MAX_CURSOR_LENGTH)
        ] = None,
        since: Annotated[str | None, Query(max_length=64)] = None,
    ) -> EventStream | JSON:
        """The topic's records as Server-Sent Events, resuming after the
        ``Last-Event-ID`` header (or ``lastEventId`` query parameter), or
        starting at ``since`` (ISO-8601 time, epoch milliseconds or
        ``earliest``); an event id wins over ``since``."""
        access = authorizer.authorize(request, [topic])
        channel = hub.channels.get(topic)
        if channel is None:
            if not source.assigned:
                return error_response(503, "not_ready", "the bridge has not reached Kafka yet", {"Retry-After": "2"})
            return error_response(404, "unknown_topic", f"topic {topic!r} is not served by this bridge")
        # An empty id is what a browser that saw no event yet may send: no cursor.
        raw_id = last_event_id or last_event_id_query
        start: tuple[int, ...] | Since | None = None
        try:
            if raw_id:
                start = cursors.parse(raw_id)
            elif since is not None:
                start = parse_since(since)
        except cursors.CursorError as error:
            return error_response(400, "bad_event_id", str(error))
        except ValueError as error:
            return error_response(400, "bad_since", str(error))
        return EventStream(channel, start, catchups, outbox_bytes=settings.outbox_bytes, heartbeat=settings.heartbeat,
                           retry_ms=settings.retry_ms, expires_at=access.expires_at)  # fmt: skip

    return app
