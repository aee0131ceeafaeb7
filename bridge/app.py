"""HTTP routes and the application's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Container, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

import orjson
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from bridge.config import Settings
from bridge.fanout.hub import Hub
from bridge.fanout.outbox import CloseReason, Cursor
from bridge.fanout.views import AHEAD_WAIT_SECONDS, Subscription
from bridge.http.auth import AuthError, build_authorizer
from bridge.http.cors import cors_options
from bridge.http.limits import ConnectionLimits, StreamLimits
from bridge.http.stream import EventStream
from bridge.kafka.catchup import CatchUps, Since, parse_since
from bridge.kafka.client import client_options
from bridge.kafka.decoding import SchemaTopics
from bridge.kafka.registry import SchemaRegistry
from bridge.kafka.source import KafkaSource
from bridge.metrics import FaultsCollector, create_registry, exposition
from bridge.wire import cursor as cursors
from bridge.wire.events import CONTROL_TYPES
from bridge.wire.filters import FilterError, parse_filter
from bridge.wire.formats import Format

MAX_TOPICS = 32  # on one stream
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}}, 400: {}, 401: {}, 403: {}, 404: {}, 503: {}
}  # fmt: skip
# Route parameters, at module level so that FastAPI can resolve them (annotations are strings)
LastEventId = Annotated[str | None, Header(max_length=cursors.MAX_CURSOR_LENGTH)]
LastEventIdQuery = Annotated[str | None, Query(alias="lastEventId", max_length=cursors.MAX_CURSOR_LENGTH)]
SinceQuery = Annotated[str | None, Query(max_length=64)]
FormatQuery = Annotated[Format | None, Query()]
TopicsQuery = Annotated[list[str], Query(min_length=1, max_length=MAX_TOPICS)]


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
    hub = Hub(ring_records=settings.ring_records, ring_bytes=settings.ring_bytes,
              ring_total_bytes=settings.ring_total_bytes, type_header=settings.type_header,
              ahead_wait=ahead_wait)  # fmt: skip
    kafka = client_options(settings)  # reads the password and TLS files: a bad one fails start-up
    schema_registry = SchemaRegistry(settings)  # reads its secret files: a bad one fails start-up
    schemas = SchemaTopics(settings, schema_registry)
    source = KafkaSource(settings, hub, kafka, schemas)
    catchups = CatchUps(settings, kafka, schemas)
    registry = create_registry(hub, source, catchups, schemas)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        schema_registry.start()
        source.start()
        try:
            yield
        finally:
            await source.stop()
            await schemas.stop()
            await schema_registry.stop()

    app = FastAPI(title="kafka-sse-bridge", lifespan=lifespan, default_response_class=JSON)
    limits = ConnectionLimits.from_settings(settings)
    registry.register(FaultsCollector(limits, source))
    app.add_middleware(StreamLimits, limits=limits)
    # Added last, so outermost: a refusal of the limits carries CORS headers too.
    if (cors := cors_options(settings)) is not None:
        app.add_middleware(CORSMiddleware, **cors)

    def end_streams(reason: CloseReason) -> None:
        hub.close_all(reason)
        catchups.close_all(reason)

    app.state.limits = limits
    app.state.end_streams = end_streams
    app.state.open_streams = lambda: [*hub.open_streams(), *catchups.open_streams()]
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
        body: dict[str, object] = {"ready": source.ready, "kafka_reachable": source.reachable,
                                   "assigned": source.assigned,
                                   # a leader election under way: those partitions pause, the others flow;
                                   # readiness is not lost
                                   "partitions_without_leader": source.leaders.without_leader}  # fmt: skip
        if schema_registry.enabled:
            # Told, not part of "ready": JSON topics are served all the same, and schema
            # topics' records are delivered as undecodable meanwhile (docs/schemas.md).
            body["schema_registry"] = {"reachable": schema_registry.stats.reachable,
                                       "schemas_cached": schema_registry.cached}  # fmt: skip
        return JSON(body, status_code=200 if source.ready else 503)

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics(accept: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus metrics (OpenMetrics if the scraper asks for it)."""
        # async, so the collector reads the hub on the event loop thread, where it changes
        body, content_type = exposition(registry, accept)
        return Response(body, media_type=content_type)

    @app.get("/topics")
    async def topics() -> dict[str, object]:
        """The served topics: partitions, whether this process reads it now
        (it is watched, or was within the linger), and for those it reads the
        bridge's position in each partition, each one's log end offset as of
        the bridge's last fetch (null for the others) and the event types its
        type header gave recent records; and what the page at / needs: the
        topics it opens with (``--page-topics``) and the control event types."""
        served: list[dict[str, object]] = []
        for name, count in sorted(source.partitions.items()):
            channel = hub.channels.get(name)
            if channel is None:
                served.append({"topic": name, "partitions": count, "read": False, "position": None,
                               "end_offsets": None, "event_types": []})  # fmt: skip
                continue
            ends = [source.end_offset(name, p) or offset for p, offset in enumerate(channel.position)]
            served.append({"topic": name, "partitions": len(channel.position), "read": True,
                           "position": channel.position, "end_offsets": ends,
                           "event_types": channel.named_event_types()})  # fmt: skip
        return {"topics": served, "page_topics": settings.page_topics, "control_events": sorted(CONTROL_TYPES)}

    def unknown_topic(topics: Sequence[str], known: Container[str]) -> JSON | None:
        missing = [topic for topic in topics if topic not in known]
        if not missing:
            return None
        if not source.assigned:
            return error_response(503, "not_ready", "the bridge has not reached Kafka yet", {"Retry-After": "2"})
        return error_response(404, "unknown_topic", f"topic {missing[0]!r} is not served by this bridge")

    async def event_stream(request: Request, topics: Sequence[str], raw_id: str | None, since: str | None,
                           format: Format | None) -> EventStream | JSON:  # fmt: skip
        if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
            # Nothing reads a stream request's body: uvicorn would stop reading the
            # connection once 64 KiB of it wait, and with it the client's going away.
            return error_response(400, "body_not_allowed", "a stream request (GET) has no body")
        access = authorizer.authorize(request, topics)
        if (refused := unknown_topic(topics, source.partitions)) is not None:
            return refused
        try:
            subscription = Subscription.of(topics, parse_filter(request.query_params.multi_items()),
                                           format or Format(settings.format))  # fmt: skip
        except FilterError as error:
            return error_response(400, "bad_filter", str(error))
        start: Cursor | Since | None = None
        tagged: tuple[Cursor, tuple[str, ...]] | None = None
        try:
            if raw_id:  # an empty id is what a browser that saw no event yet may send: no cursor
                tagged = cursors.parse_streams(raw_id, len(subscription.topics))
            elif since is not None:
                start = parse_since(since)
        except cursors.CursorError as error:
            return error_response(400, "bad_event_id", str(error))
        except ValueError as error:
            return error_response(400, "bad_since", str(error))
        try:
            await source.watch(subscription.topics)
        except (TimeoutError, KafkaError):
            return error_response(503, "not_ready", "Kafka did not answer in time", {"Retry-After": "2"})
        # Counted from here: the stream ends it (EventStream's on_close) whatever happens.
        if (refused := unknown_topic(subscription.topics, hub.channels)) is not None:  # deleted meanwhile
            source.unwatch(subscription.topics)
            return refused
        view = hub.view(subscription)
        notices: list[bytes] = []
        if tagged is not None:
            start, notices = view.reconcile(*tagged)
        return EventStream(view, start, catchups, outbox_bytes=settings.outbox_bytes, heartbeat=settings.heartbeat,
                           retry_ms=settings.retry_ms, stalled_client_seconds=settings.stalled_client_seconds,
                           expires_at=access.expires_at, notices=notices,
                           on_close=lambda: source.unwatch(subscription.topics))  # fmt: skip

    # status_code: FastAPI would read the default from the response class's __init__, which EventStream lacks
    @app.get(
        "/sse/{topic}", response_class=EventStream, status_code=200, response_model=None, responses=STREAM_RESPONSES
    )
    async def stream(request: Request, topic: str, last_event_id: LastEventId = None,
                     last_event_id_query: LastEventIdQuery = None, since: SinceQuery = None,
                     format: FormatQuery = None) -> EventStream | JSON:  # fmt: skip
        """The topic's records as Server-Sent Events, resuming after the
        ``Last-Event-ID`` header (or ``lastEventId`` query parameter), or
        starting at ``since`` (ISO-8601 time, epoch milliseconds or
        ``earliest``); an event id wins over ``since``. Filters (``key``,
        ``header.NAME``, ``where``) and ``format`` as in docs/subscribing.md."""
        return await event_stream(request, [topic], last_event_id or last_event_id_query, since, format)

    @app.get("/sse", response_class=EventStream, status_code=200, response_model=None, responses=STREAM_RESPONSES)
    async def streams(request: Request, topic: TopicsQuery,
                      last_event_id: LastEventId = None, last_event_id_query: LastEventIdQuery = None,
                      since: SinceQuery = None, format: FormatQuery = None) -> EventStream | JSON:  # fmt: skip
        """Several topics on one stream (``topic=a&topic=b``), records in
        arrival order, one id covering every topic; otherwise as ``/sse/{topic}``."""
        return await event_stream(request, topic, last_event_id or last_event_id_query, since, format)

    return app
