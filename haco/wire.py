"""JSON and msgpack shapes at the edges: jobs, workers, worker-protocol frames.

The server turns records into these shapes; the client and CLI read them. `dict[str, Any]`
lives here and nowhere deeper.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from raft_state import Job, Worker
from raft_state.records import Attempt

PROTOCOL_VERSION: Final = 1
FRAME_BYTES_MAX: Final = 4 * 1024 * 1024


def unpack(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return msgpack.unpackb(data, raw=False)
    except Exception:
        return None


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {"attempt": a.number, "worker_id": a.worker_id, "assigned_at_ms": a.assigned_at_ms,
            "started_at_ms": a.started_at_ms, "ended_at_ms": a.ended_at_ms, "outcome": a.outcome, "error": a.error,
            "result": unpack(a.result), "stats": unpack(a.stats)}


def job_json(job: Job, pending_reason: dict[str, Any] | None = None, *, full: bool = True) -> dict[str, Any]:
    spec = job.spec
    out: dict[str, Any] = {
        "job_id": job.job_id, "key": job.key, "type": spec.type, "priority": spec.priority,
        "status": str(job.status), "attempt": job.attempt, "created_at_ms": job.created_at_ms,
        "finished_at_ms": job.finished_at_ms, "worker_id": job.worker_id, "error": job.error,
        "result": unpack(job.result), "labels": unpack(spec.labels) or {},
    }
    if full:
        out.update({
            "payload": unpack(spec.payload), "timeout_s": spec.timeout_ms / 1000, "max_retries": spec.max_retries,
            "backoff_s": spec.backoff_ms / 1000, "required_tags": list(spec.required_tags),
            "requirements": {"hardware": list(spec.hardware), "min_memory_gb": spec.min_memory_gb,
                             "min_cuda_compute": spec.min_cuda_compute, "cpus": spec.cpus},
            "depends_on": list(spec.depends_on), "deadline_ms": spec.deadline_ms,
            "failures": job.failures, "lost_attempts": job.lost, "not_before_ms": job.not_before_ms,
            "attempts": [attempt_json(a) for a in job.attempts], "pending_reason": pending_reason,
        })
    return out


def worker_json(w: Worker, *, connected: bool = False, load: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"worker_id": w.worker_id, "status": str(w.status), "capacity": w.capacity, "running": list(w.running),
            "tags": list(w.tags), "hardware": list(w.hardware), "memory_gb": w.memory_gb,
            "cuda_compute": w.cuda_compute, "cpus": w.cpus, "registered_at_ms": w.registered_at_ms,
            "info": unpack(w.info) or {}, "plugins": list(w.plugins), "connected": connected, "load": load}


def frame(kind: str, **fields: Any) -> bytes:
    packed: bytes = msgpack.packb({"v": PROTOCOL_VERSION, "t": kind, **fields}, use_bin_type=True)
    return packed
