"""The JSON Schemas of the OpenAPI document (haco/server/openapi.py): bodies and answers, as plain dicts.

Answers list the fields clients rely on and allow more (a newer replica may add fields); request
bodies are closed where the route refuses unknown fields. Kept apart from the paths so each file
reads in one sitting.
"""

from __future__ import annotations

from typing import Any, Final

from raft_state import validate

Schema = dict[str, Any]


def obj(props: dict[str, Schema], required: list[str] | None = None, *, closed: bool = False) -> Schema:
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    if closed:
        out["additionalProperties"] = False
    return out


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str | list[str]) -> Schema:
    kinds = [kind] if isinstance(kind, str) else list(kind)
    return {"type": [*kinds, "null"]}


STR: Final[Schema] = {"type": "string"}
INT: Final[Schema] = {"type": "integer"}
NUM: Final[Schema] = {"type": "number"}
BOOL: Final[Schema] = {"type": "boolean"}
ANY: Final[Schema] = {}
OBJ: Final[Schema] = {"type": "object"}
STRS: Final[Schema] = {"type": "array", "items": STR}
INDEX: Final[Schema] = {"type": "integer", "minimum": 0, "description": "the log index the write was applied at, "
                        "or the applied index a read reflects"}
JOB_STATUSES: Final = ["pending", "running", "completed", "failed", "cancelled", "expired"]

_REQUIREMENTS: Final = obj({
    "hardware": STRS, "min_memory_gb": NUM, "min_cuda_compute": NUM, "cpus": INT, "memory_gb": NUM, "gpus": INT,
    "gpu_memory_gb": NUM, "gpu_compute": NUM, "gpu_kind": STR, "pin_cpus": BOOL,
}, closed=True)

#: A job as submitted (docs/jobs.md); `name` and `not_before` make it a workflow job.
def _names(items: int, chars: int) -> Schema:
    return {"type": "array", "maxItems": items, "items": {"type": "string", "minLength": 1, "maxLength": chars}}


#: A job as submitted (docs/jobs.md); `name` and `not_before` make it a workflow job. The bounds are
#: the validator's (raft_state/validate.py), which also refuses what a schema cannot say.
NEW_JOB: Final = obj({
    "type": {"type": "string", "pattern": validate.TYPE_RE.pattern,
             "description": "executor: shell, python, pytest, benchmark, noop, or a plugin"},
    "payload": ANY,
    "priority": {"type": "integer", "minimum": -validate.PRIORITY_ABS_MAX, "maximum": validate.PRIORITY_ABS_MAX},
    "timeout_s": {"type": "number", "minimum": 0.001, "maximum": validate.TIMEOUT_MS_MAX / 1000},
    "max_retries": {"type": "integer", "minimum": 0, "maximum": validate.RETRIES_MAX},
    "backoff_s": {"type": "number", "minimum": 0, "maximum": validate.BACKOFF_MS_MAX / 1000},
    "required_tags": _names(validate.TAGS_MAX, validate.TAG_CHARS_MAX), "requirements": _REQUIREMENTS,
    "depends_on": _names(validate.DEPENDS_MAX, validate.ID_CHARS_MAX), "deadline": STR,
    "key": {"type": "string", "minLength": 1, "maxLength": validate.KEY_CHARS_MAX},
    "labels": {"type": "object", "maxProperties": validate.LABELS_MAX,
               "additionalProperties": {"type": "string", "maxLength": validate.LABEL_VALUE_CHARS_MAX}},
    "not_before": STR, "name": STR,
    "queue": {"type": "string", "pattern": validate.QUEUE_RE.pattern,
              "description": "a queue that exists (default: default); a job without a priority gets the queue's"},
}, ["type"], closed=True)

ERROR: Final = obj({"error": obj({"code": STR, "message": STR, "detail": OBJ}, ["code", "message", "detail"])},
                   ["error"])

_ATTEMPT: Final = obj({"number": INT, "worker_id": STR})
JOB: Final = obj({
    "job_id": STR, "key": nullable("string"), "type": STR, "priority": INT, "status": {"enum": JOB_STATUSES},
    "attempt": INT, "created_at_ms": INT, "finished_at_ms": nullable("integer"), "worker_id": nullable("string"),
    "error": nullable("string"), "last_worker_id": nullable("string"), "result": ANY, "labels": OBJ,
    "payload": ANY, "timeout_s": NUM, "max_retries": INT, "backoff_s": NUM, "required_tags": STRS,
    "requirements": OBJ, "depends_on": STRS, "deadline_ms": nullable("integer"), "failures": INT,
    "lost_attempts": INT, "not_before_ms": nullable("integer"), "attempts": {"type": "array", "items": _ATTEMPT},
    "pending_reason": nullable("object"), "group_id": nullable("string"), "schedule_id": nullable("string"),
    "reruns": INT, "progress": ANY, "queue": STR,
}, ["job_id", "type", "status", "attempt", "created_at_ms"])

_DEVICE: Final = obj({"kind": STR, "index": INT, "model": STR, "memory_gb": NUM, "compute": NUM},
                     ["kind", "index", "model", "memory_gb", "compute"])
_INDICES: Final[Schema] = {"type": "array", "items": INT}
#: per resource, what the worker's running jobs reserve, or what they leave (docs/resources.md)
_SHARE: Final = obj({"cpus": INT, "memory_gb": NUM, "devices": _INDICES}, ["cpus", "memory_gb", "devices"])

WORKER: Final = obj({
    "worker_id": STR, "status": STR, "capacity": INT, "running": STRS, "tags": STRS, "hardware": STRS,
    "memory_gb": NUM, "cuda_compute": NUM, "cpus": INT, "registered_at_ms": INT, "info": OBJ, "plugins": STRS,
    "connected": nullable("boolean"), "load": nullable("object"),
    "devices": {"type": "array", "items": _DEVICE},
    "held": {"type": "object", "additionalProperties": _INDICES, "description": "job id -> its device indices"},
    "reserved": _SHARE, "free": _SHARE,
}, ["worker_id", "status", "capacity", "running", "cpus", "memory_gb", "devices", "reserved", "free"])

GROUP: Final = obj({
    "group_id": STR, "state": {"enum": ["running", "completed", "failed"]}, "final": BOOL, "total": INT,
    "counts": {"type": "object", "additionalProperties": INT}, "failed": {"type": "array", "items": OBJ},
    "created_at_ms": INT, "started_at_ms": nullable("integer"), "ended_at_ms": nullable("integer"),
    "schedule_id": nullable("string"), "slot_ms": nullable("integer"), "jobs": ANY, "job_ids": STRS,
}, ["group_id", "state", "final", "total", "counts"])

SCHEDULE: Final = obj({
    "schedule_id": STR, "cron": nullable("string"), "tz": nullable("string"), "every_s": nullable("number"),
    "overlap": STR, "catch_up": STR, "catch_up_window_s": NUM, "jitter_s": NUM, "paused": BOOL,
    "created_at_ms": INT, "last_slot_ms": nullable("integer"), "last_group": nullable("string"), "fired": INT,
    "skipped": INT, "jobs": STRS, "next_due_ms": {"type": "array", "items": INT},
    "runs": {"type": "array", "items": OBJ},
}, ["schedule_id", "paused"])

NEW_SCHEDULE: Final = obj({
    "id": STR, "cron": STR, "tz": STR, "every": {"type": ["string", "number"]}, "overlap": STR, "catch_up": STR,
    "catch_up_window": {"type": ["string", "number"]}, "jitter": {"type": ["string", "number"]},
    "job": NEW_JOB, "workflow": obj({"jobs": {"type": "array", "items": NEW_JOB}}),
}, ["id"], closed=True)

_COUNTS: Final = {"type": "object", "additionalProperties": INT}
QUEUE: Final = obj({
    "name": STR, "max_running": {"type": "integer", "minimum": 0, "description": "running jobs at most; 0: no limit"},
    "weight": {"type": "integer", "minimum": 1}, "priority": INT, "paused": BOOL,
    "explicit": {"type": "boolean", "description": "the queue has a record (false: default's implicit settings, "
                 "or a queue that only has jobs)"},
    "created_at_ms": nullable("integer"), "counts": {**_COUNTS, "description": "jobs by status"},
    "ready": {"type": "integer", "minimum": 0, "description": "pending jobs ready to run now"},
}, ["name", "max_running", "weight", "priority", "paused", "explicit", "counts", "ready"])

_SETTINGS: Final[dict[str, Schema]] = {"max_running": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
                                        "weight": {"type": "integer", "minimum": 1, "maximum": 1000},
                                        "priority": {"type": "integer", "minimum": -1_000_000_000,
                                                     "maximum": 1_000_000_000}}
NEW_QUEUE: Final = obj({"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}, **_SETTINGS},
                       ["name"], closed=True)
QUEUE_UPDATE: Final = {**obj(dict(_SETTINGS), closed=True), "minProperties": 1}

LOG_PAGE: Final = obj({
    "job_id": STR, "attempt": nullable("integer"), "worker_id": nullable("string"), "stream": STR,
    "chunks": {"type": "array", "items": obj({"offset": INT, "stream": STR, "t_ms": INT, "text": STR, "b64": STR})},
    "next_offset": INT, "at_end": BOOL, "ended": BOOL, "exit_code": nullable("integer"),
}, ["job_id", "chunks", "next_offset", "at_end"])

WRITE: Final = obj({"index": INDEX, "already": BOOL}, ["index"])


def write(**props: Schema) -> Schema:
    """A write's answer: its fields, the index and (on most routes) `already`."""
    return obj({**props, "index": INDEX, "already": BOOL}, ["index", *props])


SCHEMAS: Final[dict[str, Schema]] = {
    "Error": ERROR, "NewJob": NEW_JOB, "Job": JOB, "Worker": WORKER, "Group": GROUP, "Schedule": SCHEDULE,
    "NewSchedule": NEW_SCHEDULE, "LogPage": LOG_PAGE, "Queue": QUEUE, "NewQueue": NEW_QUEUE,
    "QueueUpdate": QUEUE_UPDATE,
}

__all__ = ["ANY", "BOOL", "INDEX", "INT", "NUM", "OBJ", "SCHEMAS", "STR", "STRS", "Schema", "nullable", "obj", "ref",
           "write"]
