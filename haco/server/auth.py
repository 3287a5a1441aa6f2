"""Who may call what: the route -> role table and the authorizer behind `app[AUTHORIZE]`.

Every request passes `error_middleware`, which awaits the authorizer before the handler, so
this table is the one place access is decided. A bearer token (haco/security/tokens.py) is
checked for signature, expiry and replicated revocation (`state.revoked`), then its role against
the route's rule. 401 = no usable token, 403 = a good token whose role may not do this. A
worker token opens only the worker websocket, and only as its own worker id (enforced by the
hub with `worker_identity`). mTLS mode `workers` refuses the websocket without a verified
client certificate, with or without tokens.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from haco.errors import Forbidden, Unauthorized
from haco.replica.node import Replica
from haco.security.tokens import Claims, TokenError, verify

OPEN: Final = "open"
READ: Final = "read"
SUBMIT: Final = "submit"
ADMIN: Final = "admin"
WORKER: Final = "worker"
ALLOWED: Final[dict[str, frozenset[str]]] = {
    READ: frozenset({"reader", "submitter", "admin"}),
    SUBMIT: frozenset({"submitter", "admin"}),
    ADMIN: frozenset({"admin"}),
    WORKER: frozenset({"worker", "admin"}),
}
#: (method, route as registered) -> rule. HEAD follows GET; a path with no route needs READ (then 404).
ROUTE_RULES: Final[dict[tuple[str, str], str]] = {
    ("GET", "/"): OPEN,
    ("GET", "/static/{name}"): OPEN,
    ("GET", "/api/health"): OPEN,
    ("GET", "/api/health/ready"): OPEN,
    ("GET", "/api/openapi.json"): OPEN,  # the contract: nothing in it is secret
    ("GET", "/api/health/db"): READ,
    ("GET", "/api/health/cluster"): READ,
    ("GET", "/api/cluster"): READ,
    ("GET", "/metrics"): READ,
    ("GET", "/api/dashboard"): READ,
    ("GET", "/api/jobs"): READ,
    ("GET", "/api/jobs/{job_id}"): READ,
    ("GET", "/api/jobs/{job_id}/logs"): READ,
    ("GET", "/api/jobs/{job_id}/progress"): READ,
    ("GET", "/api/jobs/{job_id}/graph"): READ,
    ("GET", "/api/workers"): READ,
    ("GET", "/api/workers/{worker_id}"): READ,
    ("GET", "/api/queue/stats"): READ,
    ("POST", "/api/jobs"): SUBMIT,
    ("POST", "/api/jobs/batch"): SUBMIT,
    ("POST", "/api/jobs/{job_id}/cancel"): SUBMIT,
    ("POST", "/api/workers/{worker_id}/drain"): ADMIN,
    ("POST", "/api/workers/{worker_id}/undrain"): ADMIN,
    ("DELETE", "/api/workers/{worker_id}"): ADMIN,
    ("POST", "/api/queue/pause"): ADMIN,
    ("POST", "/api/queue/resume"): ADMIN,
    ("GET", "/api/queues"): READ,
    ("GET", "/api/queues/{queue}"): READ,
    ("POST", "/api/queues"): ADMIN,
    ("PATCH", "/api/queues/{queue}"): ADMIN,
    ("POST", "/api/queues/{queue}/pause"): ADMIN,
    ("POST", "/api/queues/{queue}/resume"): ADMIN,
    ("DELETE", "/api/queues/{queue}"): ADMIN,  # after the rows above: they name the queue it deletes
    ("POST", "/api/results/query"): ADMIN,
    ("POST", "/api/tokens/revoke"): ADMIN,
    ("GET", "/api/members"): READ,
    ("POST", "/api/members"): ADMIN,
    ("DELETE", "/api/members/{member_id}"): ADMIN,
    ("POST", "/api/snapshot"): ADMIN,
    ("GET", "/api/snapshot"): ADMIN,
    ("GET", "/api/workers/connect"): WORKER,
    ("GET", "/api/groups"): READ,
    ("GET", "/api/groups/{group_id}"): READ,
    ("GET", "/api/schedules"): READ,
    ("GET", "/api/schedules/{schedule_id}"): READ,
    ("POST", "/api/jobs/retry"): SUBMIT,
    ("POST", "/api/groups/{group_id}/retry"): SUBMIT,
    ("POST", "/api/schedules"): SUBMIT,
    ("POST", "/api/schedules/{schedule_id}/pause"): SUBMIT,
    ("POST", "/api/schedules/{schedule_id}/resume"): SUBMIT,
    ("DELETE", "/api/schedules/{schedule_id}"): SUBMIT,  # last: the rows above name the schedule
}
PRINCIPAL: Final = "haco_principal"  #: request key: the verified Claims, when tokens are on
WORKER_ROUTE: Final = "/api/workers/connect"


def rule_for(request: web.Request) -> str:
    method = "GET" if request.method == "HEAD" else request.method
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else ""
    return ROUTE_RULES.get((method, path), READ)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def worker_identity(request: web.Request) -> str | None:
    """The worker id a worker token is bound to (None: admin token or open API, any id)."""
    claims = request.get(PRINCIPAL)
    return claims.worker_id if isinstance(claims, Claims) else None


def _has_client_cert(request: web.Request) -> bool:
    transport = request.transport
    return bool(transport is not None and transport.get_extra_info("peercert"))


def make_authorizer(replica: Replica, secret: bytes | None, require_client_cert: str = "none"
                    ) -> Callable[[web.Request], Awaitable[None]]:
    """The hook for `app[AUTHORIZE]`; `secret=None` is the open API (--insecure-open-api)."""
    async def authorize(request: web.Request) -> None:
        rule = rule_for(request)
        if rule == WORKER and require_client_cert == "workers" and not _has_client_cert(request):
            raise Forbidden("the worker websocket needs a client certificate (mTLS)", {"code": "CLIENT_CERT_REQUIRED"})
        if rule == OPEN or secret is None:
            return
        token = bearer(request)
        if token is None:
            raise Unauthorized("this endpoint needs a token: Authorization: Bearer <token> (haco --token)",
                               {"reason": "MISSING"})
        try:
            claims = verify(secret, token, now_s=time.time())
        except TokenError as exc:
            raise Unauthorized(f"token refused: {exc.message}", {"reason": exc.code}) from None
        if claims.id in replica.state.revoked:
            raise Unauthorized("token refused: it has been revoked", {"reason": "REVOKED", "token_id": claims.id})
        if claims.role not in ALLOWED[rule]:
            raise Forbidden(f"role {claims.role} may not {request.method} {request.path}",
                            {"role": claims.role, "needs": sorted(ALLOWED[rule])})
        request[PRINCIPAL] = claims
    return authorize


__all__ = ["ALLOWED", "PRINCIPAL", "ROUTE_RULES", "bearer", "make_authorizer", "rule_for", "worker_identity"]
