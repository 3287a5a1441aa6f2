"""The aiohttp application on every replica: the app factory, the error middleware every request
passes (authorization first), and the background tasks owned by cleanup contexts. Typed keys live
in keys.py and request helpers in requests.py, so routes import neither this module nor each other."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from haco.config import NodeConfig
from haco.errors import HacoError, NotApplied, PayloadTooLarge, Rejected, Unauthorized
from haco.replica.node import Replica
from haco.results.feed import RESULTS_FEED, ResultsFeed
from haco.results.store import ResultsStore
from haco.scheduler.core import Scheduler
from haco.server.hub import Hub
from haco.server.keys import AUTHORIZE, CONFIG, HUB, REPLICA, RESULTS, SCHEDULER, WAITERS, Authorize
from haco.server.waiters import JobWaiters

log = logging.getLogger(__name__)


async def allow_all(request: web.Request) -> None:
    """The default authorization hook: every route passes through `app[AUTHORIZE]`."""


def problem(status: int, code: str, message: str, detail: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "detail": detail or {}}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    try:
        await request.app[AUTHORIZE](request)
        return await handler(request)
    except Rejected as exc:
        retry = {"Retry-After": "1"} if exc.http_status == 503 else None  # NOT_READY: again, or elsewhere
        return problem(exc.http_status, exc.reject_code, exc.message, exc.detail, retry)
    except NotApplied as exc:
        after_s = str(int(exc.detail.get("retry_after_s", 1)))
        return problem(503, exc.code, exc.message, exc.detail, {"Retry-After": after_s})
    except Unauthorized as exc:
        return problem(401, exc.code, exc.message, exc.detail, {"WWW-Authenticate": 'Bearer realm="haco"'})
    except HacoError as exc:
        return problem(exc.status, exc.code, exc.message, exc.detail)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].body_bytes_max
        return problem(413, PayloadTooLarge.code, f"request body too large (limit {limit} bytes)")
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "HTTP_ERROR")
            return problem(exc.status, code, exc.reason)
        raise
    except json.JSONDecodeError as exc:
        return problem(400, "BAD_JSON", f"request body is not JSON: {exc.msg} at position {exc.pos}")
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        if request.transport is None or request.transport.is_closing():  # the client hung up mid-request
            log.debug("client went away method=%s path=%s", request.method, request.path)
            return problem(400, "CLIENT_GONE", "the client closed the connection")
        return _internal(request)
    except Exception:
        return _internal(request)


def _internal(request: web.Request) -> web.Response:
    """Anything unexpected: one error line carrying the traceback, a JSON 500 carrying its id."""
    request_id = os.urandom(8).hex()
    log.error("unhandled error request_id=%s method=%s path=%s traceback=%s", request_id, request.method,
              request.path, json.dumps(traceback.format_exc()))
    return problem(500, "INTERNAL", f"internal error {request_id}; see the replica's log",
                   {"request_id": request_id})


def build_app(cfg: NodeConfig, replica: Replica, results: ResultsStore | None = None, authorize: Authorize | None = None
              ) -> web.Application:
    """The replica's app. `authorize` defaults to tokens checked with `cfg.token_secret` (the open
    API when it is None, which config validation allows only with --insecure-open-api)."""
    from haco.server.routes import cluster as routes_cluster
    from haco.server.routes import health as routes_health
    from haco.server.routes import jobs as routes_jobs
    from haco.server.routes import logs as routes_logs
    from haco.server.routes import members as routes_members
    from haco.server.routes import snapshot as routes_snapshot
    from haco.server.routes import tokens as routes_tokens
    from haco.server.routes import workers as routes_workers
    from haco.server.routes import flows as routes_flows
    from haco.server.routes import schedules as routes_schedules
    from haco.server.routes import queues as routes_queues
    from haco.server.routes import views as routes_views
    from haco.server.rates import RATES, Rates
    from haco.server.auth import make_authorizer
    from haco.server.metrics import install as install_metrics
    if authorize is None:
        secret = cfg.token_secret.encode() if cfg.token_secret else None
        authorize = make_authorizer(replica, secret, cfg.require_client_cert)
    app = web.Application(middlewares=[error_middleware], client_max_size=cfg.body_bytes_max,
                          handler_args={"auto_decompress": False})  # read_json decodes, bounded
    hub = Hub(replica, cfg.scheduler.heartbeat_s)
    scheduler = Scheduler(replica, hub, cfg.scheduler)
    hub.assign_behind = scheduler.assign_behind
    hub.raise_version = lambda version: routes_tokens.ensure_cluster_version(replica, cfg, version)
    waiters = JobWaiters(replica)
    app[REPLICA] = replica
    app[CONFIG] = cfg
    app[HUB] = hub
    app[SCHEDULER] = scheduler
    app[WAITERS] = waiters
    app[AUTHORIZE] = authorize
    app[RESULTS] = results
    install_metrics(app, replica, hub, scheduler)
    app[RATES] = rates = Rates(replica)
    replica.add_listener(rates.on_applied)
    replica.add_listener(scheduler.on_applied)
    replica.add_listener(waiters.on_applied)
    replica.add_listener(lambda ev: hub.on_applied(replica.state, ev.ended))
    replica.add_role_listener(scheduler.on_role)
    replica.add_role_listener(hub.on_role)
    app.add_routes(routes_jobs.routes)
    app.add_routes(routes_workers.routes)
    app.add_routes(routes_cluster.routes)
    app.add_routes(routes_health.routes)
    app.add_routes(routes_tokens.routes)
    app.add_routes(routes_members.routes)
    app.add_routes(routes_snapshot.routes)
    routes_logs.install(app)
    app.add_routes(routes_flows.routes)
    app.add_routes(routes_schedules.routes)
    app.add_routes(routes_queues.routes)
    app.add_routes(routes_views.routes)
    app.cleanup_ctx.append(_scheduler_ctx)
    if results is not None:
        feed = ResultsFeed(replica, results)
        app[RESULTS_FEED] = feed
        replica.add_listener(feed.on_applied)
        app.cleanup_ctx.append(_results_feed_ctx)
    return app


async def _results_feed_ctx(app: web.Application) -> AsyncIterator[None]:
    feed = app[RESULTS_FEED]
    task = asyncio.get_running_loop().create_task(feed.run(), name="results-feed")
    yield
    # what ended before the stop goes into the store now, so the next start needs no rebuild
    if not await feed.flushed(5.0):
        log.warning("results not flushed at stop; the next start rebuilds them")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(app[SCHEDULER].run(), name="scheduler")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
