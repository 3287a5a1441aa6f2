"""Request helpers shared by the routes: the JSON body, query parameters, bad-input errors, reads
as fresh as asked, and the one way a refused command becomes an HTTP error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from raft_state import Accepted, SetClusterVersion
from raft_state.outcomes import Outcome

from haco.errors import Rejected
from haco.scheduler.core import now_ms
from haco.server.keys import REPLICA


def require_accepted(outcome: Outcome) -> Accepted:
    """The outcome of a proposal, or the HTTP error its refusal maps to (haco.errors.Rejected)."""
    if not isinstance(outcome, Accepted):
        raise Rejected(str(outcome.code), outcome.message, outcome.detail)
    return outcome


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


async def fresh_enough(request: web.Request) -> int:
    """Honour `?min_index=` and `?consistency=leader`; returns the applied index the read reflects."""
    replica = request.app[REPLICA]
    min_index = query_int(request, "min_index", None, 0, 2**62)
    consistency = request.query.get("consistency", "local")
    if consistency not in ("local", "leader"):
        raise_bad("BAD_QUERY", "?consistency must be local or leader", {"field": "consistency"})
    if consistency == "leader":  # a no-op barrier through the log: everything committed before it is visible
        index, _ = await replica.propose(SetClusterVersion(now_ms(), replica.state.cluster_version))
        min_index = max(min_index or 0, index)
    if min_index is not None and not await replica.wait_applied(min_index, 10.0):
        raise_bad("NOT_READY", f"replica has not applied index {min_index} yet (at {replica.applied_index})",
                  {"applied_index": replica.applied_index})
    return replica.applied_index
