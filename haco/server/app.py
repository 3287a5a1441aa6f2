"""The aiohttp application on every replica: app keys, error middleware, authorization hook,
background tasks owned by cleanup contexts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from haco.config import NodeConfig
from haco.errors import HacoError, NotApplied, PayloadTooLarge, Rejected, Unauthorized
from haco.replica.node import Replica
from haco.scheduler.core import Scheduler
from haco.server.hub import Hub
from haco.server.waiters import JobWaiters

log = logging.getLogger(__name__)

Authorize = Callable[[web.Request], Awaitable[None]]

REPLICA = web.AppKey("replica", Replica)
CONFIG = web.AppKey("config", NodeConfig)
HUB = web.AppKey("hub", Hub)
SCHEDULER = web.AppKey("scheduler", Scheduler)
WAITERS = web.AppKey("waiters", JobWaiters)
AUTHORIZE = web.AppKey("authorize", object)
RESULTS = web.AppKey("results", object)


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
        await request.app[AUTHORIZE](request)  # type: ignore[operator]
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
    except Exception:
        log.exception("unhandled error path=%s", request.path)
        return problem(500, "INTERNAL", "internal error; see the replica's log")


def build_app(cfg: NodeConfig, replica: Replica, results: Any = None, authorize: Authorize | None = None
              ) -> web.Application:
    """The replica's app. `authorize` defaults to tokens checked with `cfg.token_secret` (the open
    API when it is None, which config validation allows only with --insecure-open-api)."""
    from haco.server.routes import cluster as routes_cluster
    from haco.server.routes import jobs as routes_jobs
    from haco.server.routes import tokens as routes_tokens
    from haco.server.routes import workers as routes_workers
    from haco.server.auth import make_authorizer
    from haco.server.metrics import install as install_metrics
    if authorize is None:
        secret = cfg.token_secret.encode() if cfg.token_secret else None
        authorize = make_authorizer(replica, secret, cfg.require_client_cert)
    app = web.Application(middlewares=[error_middleware], client_max_size=cfg.body_bytes_max)
    hub = Hub(replica, cfg.scheduler.heartbeat_s)
    scheduler = Scheduler(replica, hub, cfg.scheduler)
    hub.assign_behind = scheduler.assign_behind
    waiters = JobWaiters(replica)
    app[REPLICA] = replica
    app[CONFIG] = cfg
    app[HUB] = hub
    app[SCHEDULER] = scheduler
    app[WAITERS] = waiters
    app[AUTHORIZE] = authorize
    app[RESULTS] = results
    install_metrics(app, replica, hub, scheduler)
    replica.add_listener(scheduler.on_applied)
    replica.add_listener(waiters.on_applied)
    replica.add_listener(lambda ev: hub.on_applied(replica.state, ev.ended))
    replica.add_role_listener(scheduler.on_role)
    replica.add_role_listener(hub.on_role)
    app.add_routes(routes_jobs.routes)
    app.add_routes(routes_workers.routes)
    app.add_routes(routes_cluster.routes)
    app.add_routes(routes_tokens.routes)
    app.cleanup_ctx.append(_scheduler_ctx)
    return app


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(app[SCHEDULER].run(), name="scheduler")
    yield
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


JSON_DEPTH_MAX = 40  #: a job's payload may nest 32 deep inside the body's own two levels


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; a clear 400 when it is not, or nests deeper than JSON_DEPTH_MAX.
    (Size is bounded by the app's client_max_size: 413.)"""
    raw = await request.read()
    if not raw:
        raise_bad("BAD_JSON", "request body is empty; send a JSON object")
    if len(raw) > 64 * 1024:  # a big body is parsed off the loop
        return await asyncio.to_thread(_parse_json, raw)
    return _parse_json(raw)


def _parse_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise_bad("BAD_JSON", f"request body nests deeper than {JSON_DEPTH_MAX} levels")
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and ints past 4300 digits
        raise_bad("BAD_JSON", f"request body is not JSON: {str(exc)[:200]}")
    # fewer brackets than the limit (counted over strings too: an overestimate) cannot nest deeper
    if raw.count(b"{") + raw.count(b"[") > JSON_DEPTH_MAX and _too_deep(value, JSON_DEPTH_MAX):
        raise_bad("BAD_JSON", f"request body nests deeper than {JSON_DEPTH_MAX} levels")
    return value


def _too_deep(value: Any, limit: int) -> bool:
    """True when containers nest more than `limit` deep; iterative, stops at the first too-deep one."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def raise_bad(code: str, message: str, detail: dict[str, Any] | None = None) -> Any:
    raise Rejected(code, message, detail)


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise_bad("BAD_QUERY", f"?{name} must be an integer", {"field": name})
    if not lo <= value <= hi:
        raise_bad("BAD_QUERY", f"?{name} must be between {lo} and {hi}", {"field": name})
    return value


def query_float(request: web.Request, name: str, lo: float, hi: float) -> float | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise_bad("BAD_QUERY", f"?{name} must be a number", {"field": name})
    if not lo <= value <= hi:
        raise_bad("BAD_QUERY", f"?{name} must be between {lo:g} and {hi:g}", {"field": name})
    return value
