"""The application factory and the one place errors become responses."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout as LanePoolTimeout
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from slotwise import __version__, web
from slotwise.api.admission import Admission
from slotwise.api.deps import AppState
from slotwise.api.fastlane import Lane
from slotwise.api.fastroutes import FastRoutes
from slotwise.api.limits import BodySizeLimit
from slotwise.api.responses import busy_response, error_response
from slotwise.api.routers import audit, billing, checkout, operator, paid_access, spend, team, usage, webhooks
from slotwise.api.routers.credits import router as credits_router
from slotwise.api.routers.webhook_endpoints import router as webhook_endpoints_router
from slotwise.catalog import Catalog, load_catalog
from slotwise.clock import Clock, SimulatedClock, SystemClock
from slotwise.config import Settings
from slotwise.db import make_engine, make_sessionmaker
from slotwise.errors import SlotwiseError
from slotwise.gateway import CardGateway
from slotwise.gateway.factory import make_gateway
from slotwise.logs import install_redaction
from slotwise.services.context import Env
from slotwise.worker import start_in_process

HTTP_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              413: "payload_too_large", 415: "unsupported_media_type"}


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(part) for part in err.get("loc", ())], "message": str(err.get("msg", "")),
         "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SlotwiseError)
    async def slotwise_error(_: Request, exc: SlotwiseError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        body = {"error": {"code": "invalid_request", "message": "The request is not valid.",
                          "errors": _validation_details(exc)}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(IntegrityError)
    async def integrity_error(_: Request, exc: IntegrityError) -> JSONResponse:
        # Only reachable through a race between two requests that no row lock orders (e.g. two new
        # organizations claiming one owner email): the loser's transaction was rolled back whole.
        body = {"error": {"code": "conflict", "message": "A concurrent request changed the same data. Try again."}}
        return JSONResponse(body, status_code=409)

    @app.exception_handler(OperationalError)
    @app.exception_handler(psycopg.OperationalError)  # on the fast lane (api/fastlane.py)
    @app.exception_handler(PoolTimeout)  # no pooled connection came free in time (db.POOL_TIMEOUT_SECONDS)
    @app.exception_handler(LanePoolTimeout)
    async def database_busy(_: Request, exc: Exception) -> Response:
        return busy_response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 for a body it could not decode at all (bad UTF-8, nesting too deep for
        # the parser); that is the same invalid_request 422 as any other malformed JSON.
        status = 422 if exc.status_code == 400 else exc.status_code
        code = HTTP_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                            headers=getattr(exc, "headers", None))


_frozen = False


def freeze_startup_objects() -> None:
    """Move everything built at startup (the app, its routes and models, SQLAlchemy's metadata, the
    catalog) out of the garbage collector's sight. Each full collection otherwise walked all of it:
    measured, 50-90 ms pauses several times a second under load, which were the request path's whole
    p99 (bench/http.py). Startup objects live as long as the process, so nothing is lost; once per
    process, at the first startup (a test process starts many apps)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """From startup to shutdown: the fast lane's connection pool, and the job worker if it runs here."""
    state: AppState = app.state.slotwise
    if state.lane is not None:
        await state.lane.open()
    freeze_startup_objects()
    try:
        if state.settings.run_worker:
            async with run_worker(app):
                yield
        else:
            yield
    finally:
        if state.lane is not None:
            await state.lane.close()


@asynccontextmanager
async def run_worker(app: FastAPI) -> AsyncIterator[None]:
    """The server process's job worker (SLOTWISE_WORKER), from startup to shutdown."""
    state: AppState = app.state.slotwise
    engine = state.sessions.kw["bind"]
    background = start_in_process(engine, env=state.env, clock=state.clock, secret_key=state.settings.secret_key)
    try:
        yield
    finally:
        await run_in_threadpool(background.stop)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    clock: Clock | None = None,
    gateway: CardGateway | None = None,
    catalog: Catalog | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    engine = engine or make_engine(settings.database_url, concurrency=settings.concurrency)
    if clock is None:
        clock = SimulatedClock(settings.clock_start) if settings.clock == "simulated" else SystemClock()
    env = Env(catalog=catalog or load_catalog(settings.catalog_path), gateway=gateway or make_gateway(settings),
              quantity_changes_per_hour=settings.quantity_changes_per_hour)
    app = FastAPI(title="slotwise", version=__version__,
                  description="Plans, per-slot add-ons, pro-rated monthly billing and capacity.", lifespan=lifespan)
    lane = Lane(str(engine.url.render_as_string(hide_password=False)), size=settings.concurrency) \
        if engine.dialect.name == "postgresql" else None
    app.state.slotwise = AppState(settings=settings, sessions=make_sessionmaker(engine), env=env, clock=clock,
                                  lane=lane)
    install_error_handlers(app)
    install_redaction()
    # SLOTWISE_CONCURRENCY requests in the app at once, the rest queued or refused with 503; inside
    # the body limit, so that a slow or oversized body never holds one of those places.
    if lane is not None:  # innermost: the hottest routes answered ahead of FastAPI (see api/fastroutes.py)
        app.add_middleware(FastRoutes, state=app.state.slotwise)
    app.add_middleware(Admission, concurrency=settings.concurrency)
    app.add_middleware(BodySizeLimit)  # 413 above 64 KiB, before any parsing
    for router in (operator.router, billing.router, team.router, spend.router, usage.router, webhooks.router):
        app.include_router(router)
    app.include_router(credits_router)
    app.include_router(checkout.router)
    app.include_router(paid_access.router)
    app.include_router(webhook_endpoints_router)
    app.include_router(audit.router)
    web.install(app)  # the customer pages (Jinja2) and their static files
    return app
