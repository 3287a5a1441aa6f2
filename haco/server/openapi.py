"""The REST API's contract: an OpenAPI 3.1 document built from plain dicts, served at `GET /api/openapi.json`.

Every route of the app has one operation here (tests/server/test_openapi.py walks `app.router`
both ways), each with its parameters, body, answers and the error codes each status carries;
the role a route needs comes from auth.ROUTE_RULES, so the two cannot disagree. A new route:
add a row to `_paths()` (and to tests/server/test_routes.py CASES); an answer that names something
a next call takes gets links in haco/server/openapi_links.py. The suite fuzzes the API with
Schemathesis over this document (tests/integration/test_fuzz_api.py), so an answer that breaks
it, a status or code it does not list, or any 5xx fails the run.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from haco.results.sandbox import ROW_LIMIT_DEFAULT, ROW_LIMIT_MAX
from haco.server.auth import ADMIN, OPEN, READ, ROUTE_RULES, SUBMIT, WORKER
from haco.server.openapi_links import add_links
from haco.server.openapi_schemas import (ANY, BOOL, INDEX, INT, OBJ, SCHEMAS, STR, STRS, Schema, nullable, obj,
                                         ref, write)

OPENAPI_PATH: Final = "/api/openapi.json"
_ROLES: Final = {OPEN: "none (open)", READ: "reader, submitter or admin", SUBMIT: "submitter or admin",
                 ADMIN: "admin", WORKER: "worker (its own id) or admin"}

#: error codes every operation may answer, by status (the middleware's and authorization's)
_COMMON: Final[dict[int, list[str]]] = {401: ["UNAUTHORIZED"], 403: ["FORBIDDEN"], 500: ["INTERNAL"]}
_BODY: Final[dict[int, list[str]]] = {400: ["BAD_JSON", "BAD_ENCODING", "CLIENT_GONE", "INVALID"],
                                      413: ["PAYLOAD_TOO_LARGE"], 415: ["UNSUPPORTED_ENCODING"]}
#: a proposal through the log: no leader or a full queue (nothing applied), or an unknown outcome
_PROPOSE: Final[dict[int, list[str]]] = {503: ["NOT_APPLIED", "OVERLOADED", "NOT_READY"], 504: ["OUTCOME_UNKNOWN"]}
#: reads honouring ?min_index and ?consistency (consistency=leader proposes a barrier)
_FRESH: Final[dict[int, list[str]]] = {400: ["BAD_QUERY"], **_PROPOSE}
#: a command gated on a cluster version (raised once every replica runs code that knows it)
_GATED: Final[dict[int, list[str]]] = {409: ["VERSION_GATED"], 503: ["NOT_APPLIED", "NOT_READY"]}
_STATUS_TEXT: Final = {200: "OK", 201: "created", 400: "bad request", 401: "no usable token",
                       403: "the token's role may not do this", 404: "not found", 408: "timed out",
                       409: "refused by the state machine", 413: "body too large", 415: "unsupported encoding",
                       429: "busy", 500: "unexpected error (detail.request_id names the replica's log line)",
                       503: "not applied: retry (Retry-After), or elsewhere", 504: "outcome unknown: retry with "
                       "the same key"}


def _q(name: str, schema: Schema, doc: str, *, repeat: bool = False) -> dict[str, Any]:
    if repeat:
        return {"name": name, "in": "query", "description": doc, "style": "form", "explode": True,
                "schema": {"type": "array", "items": schema}}
    return {"name": name, "in": "query", "description": doc, "schema": schema}


def _p(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


_READ_PARAMS: Final = [
    _q("min_index", {"type": "integer", "minimum": 0}, "wait (up to 10 s) until this replica applied the index"),
    _q("consistency", {"enum": ["local", "leader"]}, "leader: as fresh as the leader's commit (a barrier)"),
]
_WAIT: Final = _q("wait_s", {"type": "number", "minimum": 0, "maximum": 60}, "long-poll until final, seconds")
_JOB_ID: Final = {**_p("job_id"), "description": "a job id, or a unique prefix of 6+ characters"}


def _merge(*tables: dict[int, list[str]]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for table in tables:
        for status, codes in table.items():
            out.setdefault(status, [])
            out[status] += [c for c in codes if c not in out[status]]
    return out


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    schema = {"allOf": [ref("Error"), obj({"error": obj({"code": {"enum": sorted(codes)}})})]}
    return {"description": f"{_STATUS_TEXT.get(status, 'error')}: {', '.join(sorted(codes))}",
            "content": {"application/json": {"schema": schema}}}


def _json(schema: Schema, doc: str = "") -> dict[str, Any]:
    return {"description": doc or "OK", "content": {"application/json": {"schema": schema}}}


def op(method: str, path: str, summary: str, ok: dict[int, dict[str, Any]], *,
       params: list[dict[str, Any]] | None = None, body: Schema | None = None, body_required: bool = True,
       errors: tuple[dict[int, list[str]], ...] = ()) -> tuple[str, str, dict[str, Any]]:
    """One operation: `ok` maps success statuses to responses; `errors` merges status -> codes tables."""
    rule = ROUTE_RULES.get((method.upper(), path), READ)
    tables = (_COMMON, *((_BODY,) if body is not None else ()), *errors)
    if rule == OPEN:
        tables = tuple({s: c for s, c in t.items() if s not in (401, 403)} for t in tables)
    responses: dict[str, Any] = {str(s): r for s, r in ok.items()}
    for status, codes in sorted(_merge(*tables).items()):
        responses[str(status)] = _error_response(status, codes)
    out: dict[str, Any] = {"summary": summary, "operationId": f"{method}:{path}", "x-role": rule,
                           "description": f"Role: {_ROLES[rule]}.", "responses": responses}
    path_params = [_JOB_ID if n == "job_id" else _p(n) for n in _path_names(path)]
    if path_params or params:
        out["parameters"] = [*path_params, *(params or [])]
    if body is not None:
        out["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    if rule == OPEN:
        out["security"] = []
    return method, path, out


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


_NOT_FOUND: Final = {404: ["NOT_FOUND"]}
_JOB_NOT_FOUND: Final = {404: ["NOT_FOUND"], 400: ["AMBIGUOUS_JOB_ID"]}
_SUBMIT_CODES: Final = {400: ["INVALID", "UNKNOWN_EXECUTOR", "UNKNOWN_DEPENDENCY", "DEPENDENCY_CYCLE", "MALFORMED",
                              "UNKNOWN_QUEUE"],
                        409: ["KEY_REUSED", "DUPLICATE_JOB_ID", "GROUP_EXISTS", "VERSION_GATED"]}
_WORKER_WRITE: Final = {404: ["UNKNOWN_WORKER", "NOT_FOUND"], 409: ["WORKER_UNAVAILABLE", "VERSION_GATED"]}
_SCHEDULE_WRITE: Final = {404: ["NOT_FOUND", "UNKNOWN_SCHEDULE"], 409: ["SCHEDULE_EXISTS", "SCHEDULE_PAUSED"]}
_QUEUE_WRITE: Final = {404: ["UNKNOWN_QUEUE"]}


def _paths() -> list[tuple[str, str, dict[str, Any]]]:
    page = {"jobs": {"type": "array", "items": ref("Job")}, "index": INDEX, "total": INT,
            "next": nullable("integer")}
    submitted = write(job_id=STR)
    batch = obj({"job_ids": STRS, "index": INDEX, "already": BOOL, "group_id": nullable("string"), "names": ANY},
                ["job_ids", "index"])
    retried = obj({"retried": STRS, "dependents": STRS, "unchanged": OBJ, "index": INDEX, "already": BOOL},
                  ["retried", "index"])
    worker_write = _json(write(worker_id=STR))
    ready = obj({"ready": BOOL, "leader": nullable("string"), "applied_index": INT, "commit_index": INT,
                 "stuck": BOOL}, ["ready"])
    verdict = obj({"status": {"enum": ["healthy", "degraded", "unhealthy"]}, "problems": {"type": "array"},
                   "replicas": {"type": "array"}, "answered_by": STR}, ["status", "problems"])
    schedule_write = _json(write(schedule_id=STR))
    logs_params = [_q("attempt", {"type": "integer", "minimum": 1}, "default: the latest"),
                   _q("stream", {"enum": ["stdout", "stderr", "both"]}, "default both"),
                   _q("offset", {"type": "integer", "minimum": 0}, "bytes of both streams before the first byte"),
                   _q("limit", {"type": "integer", "minimum": 1, "maximum": 1048576}, "bytes, at most 1 MiB"),
                   _q("tail", {"type": "integer", "minimum": 0, "maximum": 1000000}, "start at the last N lines"),
                   _q("follow", {"enum": ["0", "1", "true", "false"]}, "1: an NDJSON stream until the end")]
    return [
        op("get", "/", "the dashboard page", {200: {"description": "HTML", "content": {"text/html": {}}}}),
        op("get", "/static/{name}", "the dashboard's modules and stylesheet",
           {200: {"description": "a file", "content": {"text/javascript": {}, "text/css": {}}}},
           errors=(_NOT_FOUND,)),
        op("get", OPENAPI_PATH, "this document", {200: _json(OBJ, "the OpenAPI 3.1 document")}),
        op("get", "/metrics", "Prometheus metrics", {200: {"description": "text format",
                                                           "content": {"text/plain": {}}}}),
        op("get", "/api/dashboard", "the dashboard's data", {200: _json(OBJ)}),
        op("get", "/api/health", "liveness (true without a leader)", {200: _json(obj({"ok": BOOL, "id": STR},
                                                                                   ["ok", "id"]))}),
        op("get", "/api/health/ready", "readiness: a leader known, caught up, apply not stuck",
           {200: _json(ready), 503: _json(ready, "not ready")}),
        op("get", "/api/health/db", "snapshot and results store", {200: _json(obj({"snapshot_index": INT,
                                                                                     "results": ANY}))}),
        op("get", "/api/health/cluster", "the cluster's verdict: healthy, degraded or unhealthy (503)",
           {200: _json(verdict), 503: _json(verdict, "unhealthy")}),
        op("get", "/api/cluster", "this replica: role, leader, term, indexes, digests, peers, code version",
           {200: _json(obj({"id": STR, "role": STR, "leader": nullable("string"), "term": INT, "commit_index": INT,
                            "applied_index": INT, "digest": ANY, "code_version": INT},
                           ["id", "role", "applied_index"]))}),
        op("get", "/api/jobs", "list jobs: filters, a sort, keyset pages",
           {200: _json(obj({**page, "cursor": nullable("string")}, ["jobs", "index", "total", "next"]))},
           params=[_q("status", {"enum": ["pending", "running", "completed", "failed", "cancelled", "expired"]},
                      "only jobs in this state"),
                   _q("type", STR, "only this executor type"), _q("queue", STR, "only this queue (none: default)"),
                   _q("label", {"type": "string", "pattern": "^[^=]+=.*$"}, "KEY=VALUE; all must match",
                      repeat=True),
                   _q("group", STR, "only this group's jobs"),
                   _q("q", {"type": "string", "maxLength": 200}, "case-insensitive text in the id or key"),
                   _q("sort", {"enum": [f"{d}{k}" for k in ("created", "duration", "worker", "attempts")
                                        for d in ("", "-")]}, "a leading - for descending"),
                   _q("order", {"enum": ["oldest", "newest"]}, "created order (sort=created / -created)"),
                   _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"),
                   _q("after", {"type": "integer", "minimum": 0}, "the `next` of the page before (created order)"),
                   _q("cursor", STR, "the `cursor` of the page before (any sort)"), *_READ_PARAMS],
           errors=(_FRESH, _NOT_FOUND)),
        op("post", "/api/jobs", "submit a job (201; 200 with the same id for a repeated key)",
           {201: _json(submitted), 200: _json(submitted, "a repeated key: the existing job")}, body=ref("NewJob"),
           errors=(_PROPOSE, _SUBMIT_CODES)),
        op("post", "/api/jobs/batch", "submit 1 to 1000 jobs in one log entry (a workflow when they have names)",
           {201: _json(batch), 200: _json(batch, "every key repeated")},
           body=obj({"jobs": {"type": "array", "items": ref("NewJob"), "minItems": 1}, "group": STR}, ["jobs"],
                    closed=True), errors=(_PROPOSE, _SUBMIT_CODES, _GATED)),
        op("post", "/api/jobs/retry", "run failed, cancelled or expired jobs again",
           {200: _json(retried)}, body=obj({"job_ids": {"type": "array", "items": STR, "minItems": 1}},
                                           ["job_ids"], closed=True),
           errors=(_PROPOSE, _GATED, {400: ["AMBIGUOUS_JOB_ID"], 404: ["UNKNOWN_JOB"],
                                      409: ["NOT_RUNNABLE", "JOB_FINAL", "TOO_EARLY"]})),
        op("get", "/api/jobs/{job_id}", "one job: attempts, result, why it is pending",
           {200: _json(obj({"job": ref("Job"), "index": INDEX}, ["job", "index"]))},
           params=[_WAIT, *_READ_PARAMS], errors=(_FRESH, _JOB_NOT_FOUND)),
        op("post", "/api/jobs/{job_id}/cancel", "cancel a job",
           {200: _json(write(job_id=STR))}, body=obj({"reason": STR}, closed=True), body_required=False,
           errors=(_PROPOSE, _JOB_NOT_FOUND, {404: ["UNKNOWN_JOB"], 409: ["JOB_FINAL"]})),
        op("get", "/api/jobs/{job_id}/logs", "an attempt's output from the worker that ran it",
           {200: {"description": "a JSON page, or with follow=1 an NDJSON stream",
                  "content": {"application/json": {"schema": ref("LogPage")}, "application/x-ndjson": {}}}},
           params=logs_params,
           errors=(_JOB_NOT_FOUND, {400: ["BAD_QUERY"], 409: ["NOT_STARTED", "WORKER_OFFLINE", "LOG_UNAVAILABLE"],
                                    503: ["NOT_APPLIED", "NOT_READY"]})),
        op("get", "/api/jobs/{job_id}/progress", "the running attempt's latest progress (leader memory)",
           {200: _json(obj({"job_id": STR, "progress": ANY}, ["job_id"]))},
           errors=(_JOB_NOT_FOUND, {503: ["NOT_APPLIED", "NOT_READY"]})),
        op("get", "/api/jobs/{job_id}/graph", "a job's dependencies and dependents, a few levels each way",
           {200: _json(obj({"nodes": {"type": "array", "items": OBJ}, "edges": {"type": "array"}, "index": INDEX},
                           ["nodes", "edges", "index"]))},
           params=[_q("depth", {"type": "integer", "minimum": 1, "maximum": 5}, "levels each way (2)"),
                   *_READ_PARAMS], errors=(_FRESH, _JOB_NOT_FOUND)),
        op("get", "/api/groups", "groups, newest first", {200: _json(obj({"groups": {"type": "array",
                                                                                       "items": ref("Group")},
                                                                            "index": INDEX}, ["groups", "index"]))},
           params=[_q("schedule", STR, "only this schedule's runs"),
                   _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 100"), *_READ_PARAMS],
           errors=(_FRESH,)),
        op("get", "/api/groups/{group_id}", "a group's summary (long-poll until final with wait_s)",
           {200: _json(obj({"group": ref("Group"), "index": INDEX}, ["group", "index"]))},
           params=[_WAIT, *_READ_PARAMS], errors=(_FRESH, _NOT_FOUND)),
        op("post", "/api/groups/{group_id}/retry", "retry a group's failed, cancelled and expired jobs",
           {200: _json(retried)}, errors=(_PROPOSE, _GATED, _NOT_FOUND, {409: ["NOT_RUNNABLE", "TOO_EARLY"]})),
        op("post", "/api/schedules", "create a schedule (cron in a time zone, or an interval)",
           {201: _json(obj({"schedule": ref("Schedule"), "index": INDEX, "already": BOOL}, ["index"])),
            200: _json(obj({"schedule": ref("Schedule"), "index": INDEX, "already": BOOL}, ["index"]),
                       "the same schedule again")},
           body=ref("NewSchedule"), errors=(_PROPOSE, _GATED, _SUBMIT_CODES, _SCHEDULE_WRITE)),
        op("get", "/api/schedules", "schedules by id", {200: _json(obj({"schedules": {"type": "array",
                                                                                       "items": ref("Schedule")},
                                                                         "index": INDEX}, ["schedules", "index"]))},
           params=_READ_PARAMS, errors=(_FRESH,)),
        op("get", "/api/schedules/{schedule_id}", "one schedule with its last runs and next due times",
           {200: _json(obj({"schedule": ref("Schedule"), "index": INDEX}, ["schedule", "index"]))},
           params=[_q("runs", {"type": "integer", "minimum": 1, "maximum": 1000}, "default 20"), *_READ_PARAMS],
           errors=(_FRESH, _NOT_FOUND)),
        op("post", "/api/schedules/{schedule_id}/pause", "pause a schedule", {200: schedule_write},
           errors=(_PROPOSE, _GATED, _SCHEDULE_WRITE)),
        op("post", "/api/schedules/{schedule_id}/resume", "resume a schedule", {200: schedule_write},
           errors=(_PROPOSE, _GATED, _SCHEDULE_WRITE)),
        op("delete", "/api/schedules/{schedule_id}", "delete a schedule", {200: schedule_write},
           errors=(_PROPOSE, _GATED, _SCHEDULE_WRITE)),
        op("get", "/api/workers", "the worker table (connections and load are the leader's)",
           {200: _json(obj({"workers": {"type": "array", "items": ref("Worker")}, "index": INDEX,
                            "view": {"enum": ["leader", "local"]}}, ["workers"]))},
           params=_READ_PARAMS, errors=(_FRESH,)),
        op("get", "/api/workers/connect", "the worker websocket (msgpack frames)",
           {101: {"description": "switching to the websocket"}}, errors=({400: ["HTTP_ERROR", "BAD_REQUEST"]},)),
        op("get", "/api/workers/{worker_id}", "one worker",
           {200: _json(obj({"worker": ref("Worker"), "index": INDEX, "view": {"enum": ["leader", "local"]}},
                           ["worker"]))},
           params=_READ_PARAMS, errors=(_FRESH, _NOT_FOUND)),
        op("delete", "/api/workers/{worker_id}", "deregister a worker", {200: worker_write},
           errors=(_PROPOSE, _WORKER_WRITE)),
        op("post", "/api/workers/{worker_id}/drain", "drain a worker: it takes no new work", {200: worker_write},
           errors=(_PROPOSE, _WORKER_WRITE)),
        op("post", "/api/workers/{worker_id}/undrain", "a draining worker takes work again (cluster version 4)",
           {200: worker_write}, errors=(_PROPOSE, _GATED, _WORKER_WRITE)),
        op("get", "/api/members", "the Raft members: voters and learners, the leader, a change in flight",
           {200: _json(obj({"members": {"type": "array", "items": obj({"id": STR, "raft_addr": STR, "api_url": STR,
                                                                         "voter": BOOL}, ["id"])},
                            "leader": nullable("string"), "leader_url": nullable("string")}, ["members"]))}),
        op("post", "/api/members", "add a replica (probed first, then a learner until caught up, then a voter)",
           {200: _json(obj({"id": STR, "already": BOOL, "members": {"type": "array"}}, ["id", "already"]))},
           body=obj({"id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"}, "raft_addr": STR,
                     "api_url": STR, "catch_up_s": {"type": "number", "minimum": 1, "maximum": 600}},
                    ["id", "raft_addr", "api_url"], closed=True),
           errors=(_PROPOSE, _GATED, {409: ["MEMBERSHIP_REFUSED"]})),
        op("delete", "/api/members/{member_id}", "remove a replica (a leader hands leadership over first)",
           {200: _json(obj({"id": STR, "already": BOOL, "members": {"type": "array"}}, ["id", "already"]))},
           errors=(_PROPOSE, {400: ["INVALID"], 409: ["MEMBERSHIP_REFUSED"]})),
        op("get", "/api/queue/stats", "counts by state, paused, ready",
           {200: _json(obj({"counts": OBJ, "paused": BOOL, "ready": INT, "index": INDEX},
                           ["counts", "paused", "index"]))}, params=_READ_PARAMS, errors=(_FRESH,)),
        op("post", "/api/queue/pause", "pause assignment", {200: _json(write(paused=BOOL))}, errors=(_PROPOSE,)),
        op("post", "/api/queue/resume", "resume assignment", {200: _json(write(paused=BOOL))}, errors=(_PROPOSE,)),
        op("get", "/api/queues", "named queues: settings, jobs by status, ready jobs; the global pause",
           {200: _json(obj({"queues": {"type": "array", "items": ref("Queue")},
                            "other": {"anyOf": [ref("Queue"), {"type": "null"}],
                                      "description": "the implicit queues past the 256 listed, summed"},
                            "paused": BOOL, "index": INDEX}, ["queues", "paused", "index"]))},
           params=_READ_PARAMS, errors=(_FRESH,)),
        op("get", "/api/queues/{queue}", "one queue",
           {200: _json(obj({"queue": ref("Queue"), "index": INDEX}, ["queue", "index"]))},
           params=_READ_PARAMS, errors=(_FRESH, _QUEUE_WRITE)),
        op("post", "/api/queues", "create a queue (201; 200 when it exists with these settings)",
           {201: _json(obj({"queue": ref("Queue"), "index": INDEX, "already": BOOL}, ["queue", "index"])),
            200: _json(obj({"queue": ref("Queue"), "index": INDEX, "already": BOOL}, ["queue", "index"]),
                       "the same queue again")},
           body=ref("NewQueue"), errors=(_PROPOSE, _GATED, {409: ["QUEUE_EXISTS"]})),
        op("patch", "/api/queues/{queue}", "change a queue's max_running, weight or priority",
           {200: _json(obj({"queue": ref("Queue"), "index": INDEX, "already": BOOL}, ["queue", "index"]))},
           body=ref("QueueUpdate"), errors=(_PROPOSE, _GATED, _QUEUE_WRITE)),
        op("post", "/api/queues/{queue}/pause", "pause a queue (its running jobs go on)",
           {200: _json(write(name=STR, paused=BOOL))}, errors=(_PROPOSE, _GATED, _QUEUE_WRITE, {400: ["INVALID"]})),
        op("post", "/api/queues/{queue}/resume", "resume a queue",
           {200: _json(write(name=STR, paused=BOOL))}, errors=(_PROPOSE, _GATED, _QUEUE_WRITE, {400: ["INVALID"]})),
        op("delete", "/api/queues/{queue}", "delete a queue that holds no pending or running job",
           {200: _json(write(name=STR))}, errors=(_PROPOSE, _GATED, {400: ["INVALID"], 409: ["QUEUE_NOT_EMPTY"]})),
        op("post", "/api/results/query", "one read-only SELECT over the results history, sandboxed; a result of "
           "more rows than limit is refused (400 SQL_RESULT_LIMIT), never cut short",
           {200: _json(obj({"columns": STRS, "rows": {"type": "array", "items": {"type": "array"}}},
                           ["columns", "rows"]), "every row of the result")},
           body=obj({"sql": STR, "limit": {"type": "integer", "minimum": 1, "maximum": ROW_LIMIT_MAX,
                                           "default": ROW_LIMIT_DEFAULT,
                                           "description": "the most rows the result may have"}}, ["sql"],
                    closed=True),
           errors=({400: ["SQL_REFUSED", "SQL_ERROR", "SQL_MEMORY_LIMIT", "SQL_RESULT_LIMIT"], 408: ["SQL_TIMEOUT"],
                    429: ["SQL_BUSY"], 503: ["NOT_READY"]},)),
        op("post", "/api/tokens/revoke", "revoke a token by value or id",
           {200: _json(write(token_id=STR, expires_at_ms=INT))},
           body={"oneOf": [obj({"token": STR}, ["token"], closed=True),
                           obj({"token_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"}}, ["token_id"],
                               closed=True)]},
           errors=(_PROPOSE, _GATED)),
        op("get", "/api/snapshot", "this replica's latest snapshot file (DuckDB), streamed; one is taken first if none",
           {200: {"description": "the file; X-Haco-Snapshot-Index names its Raft index",
                  "content": {"application/octet-stream": {}}}},
           errors=({404: ["NOT_FOUND"], 503: ["NOT_APPLIED"]},)),
        op("post", "/api/snapshot", "take a snapshot now; answers once the file covers the index applied at the call",
           {200: _json(obj({"id": STR, "snapshot_index": INT, "applied_index": INT, "already": BOOL,
                            "seconds": {"type": "number"}}, ["id", "snapshot_index", "applied_index"]))},
           errors=({503: ["NOT_APPLIED"]},)),
    ]


_DOC: dict[str, Any] | None = None


def document() -> dict[str, Any]:
    """The whole document (built once; a copy, so a caller may change it)."""
    global _DOC
    if _DOC is None:
        paths: dict[str, dict[str, Any]] = {}
        for method, path, operation in _paths():
            paths.setdefault(path, {})[method] = operation
        add_links(paths)
        _DOC = {
            "openapi": "3.1.0",
            "info": {"title": "haco", "version": "1", "description": (
                "The REST API every replica serves. Errors are {\"error\": {\"code\", \"message\", \"detail\"}} "
                "with a stable UPPER_SNAKE code; each operation lists its codes per status. Writes answer with "
                "the log index they were applied at; reads carry the applied index they reflect.")},
            "servers": [{"url": "/"}],
            "security": [{"bearer": []}],
            "paths": paths,
            "components": {"schemas": copy.deepcopy(SCHEMAS), "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a haco token (haco token issue)"}}},
        }
    return copy.deepcopy(_DOC)


def operations() -> set[tuple[str, str]]:
    """(METHOD, path template) of every documented operation."""
    return {(method.upper(), path) for path, item in document()["paths"].items() for method in item}


__all__ = ["OPENAPI_PATH", "document", "op", "operations"]
