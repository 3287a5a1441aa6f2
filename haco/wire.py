"""Shapes at the edges: the worker protocol's frames (both sides: the server's hub and the worker
agent), and the JSON the server makes of jobs, workers and queues (the client and CLI read it).

A leaf module: it imports only msgpack at run time (records are read by attribute; their types
are imported for checking only), so a worker machine loads neither raft_state nor the server.

Worker protocol v1: frames are binary websocket messages, each a msgpack map with `"v": 1` and a
type `"t"`; haco/server/hub.py is the replica's side, haco/worker/protocol.py the worker's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgpack

if TYPE_CHECKING:
    from raft_state import Job, Worker
    from raft_state.queries import QueueSummary
    from raft_state.records import Attempt

PROTOCOL_VERSION: Final = 1
FRAME_BYTES_MAX: Final = 4 * 1024 * 1024
CONNECT_PATH: Final = "/api/workers/connect"


def encode(kind: str, **fields: Any) -> bytes:
    """One frame. Raises TypeError when a field is not msgpack-able (the caller's bug)."""
    data: bytes = msgpack.packb({"v": PROTOCOL_VERSION, "t": kind, **fields}, use_bin_type=True)
    return data


def decode(data: bytes) -> dict[str, Any] | None:
    """The frame as a map, or None when it is not a version-1 map with a string type."""
    try:
        body = msgpack.unpackb(data, raw=False)
    except Exception:  # msgpack raises several unrelated types for garbage
        return None
    if not isinstance(body, dict) or body.get("v") != PROTOCOL_VERSION or not isinstance(body.get("t"), str):
        return None
    return body


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
        "last_worker_id": job.attempts[-1].worker_id if job.attempts else None,
        "result": unpack(job.result), "labels": unpack(spec.labels) or {},
    }
    if full:
        out.update({
            "payload": unpack(spec.payload), "timeout_s": spec.timeout_ms / 1000, "max_retries": spec.max_retries,
            "backoff_s": spec.backoff_ms / 1000, "required_tags": list(spec.required_tags),
            "requirements": {"hardware": list(spec.hardware), "min_memory_gb": spec.min_memory_gb,
                             "min_cuda_compute": spec.min_cuda_compute, "cpus": spec.cpus,
                             "memory_gb": spec.memory_gb, "gpus": spec.gpus, "gpu_memory_gb": spec.gpu_memory_gb,
                             "gpu_compute": spec.gpu_compute, "gpu_kind": spec.gpu_kind, "pin_cpus": spec.pin_cpus},
            "queue": spec.queue,
            "depends_on": list(spec.depends_on), "deadline_ms": spec.deadline_ms,
            "failures": job.failures, "lost_attempts": job.lost, "not_before_ms": job.not_before_ms,
            "attempts": [attempt_json(a) for a in job.attempts], "pending_reason": pending_reason,
        })
    return out


def worker_json(w: Worker, *, connected: bool = False, load: dict[str, Any] | None = None,
                free: dict[str, Any] | None = None) -> dict[str, Any]:
    """`free`: what its running jobs leave ({"cpus", "memory_gb", "devices"}); reserved is the rest."""
    out = {"worker_id": w.worker_id, "status": str(w.status), "capacity": w.capacity, "running": list(w.running),
           "tags": list(w.tags), "hardware": list(w.hardware), "memory_gb": w.memory_gb,
           "cuda_compute": w.cuda_compute, "cpus": w.cpus, "registered_at_ms": w.registered_at_ms,
           "info": unpack(w.info) or {}, "plugins": list(w.plugins), "connected": connected, "load": load,
           "devices": [{"kind": d.kind, "index": d.index, "model": d.model, "memory_gb": d.memory_gb,
                        "compute": d.compute} for d in w.devices],
           "held": {job_id: list(held) for job_id, held in w.held}}
    if free is not None:
        out["free"] = free
        out["reserved"] = {"cpus": w.cpus - free["cpus"], "memory_gb": round(w.memory_gb - free["memory_gb"], 3),
                           "devices": sorted({d.index for d in w.devices} - set(free["devices"]))}
    return out



def queue_json(q: QueueSummary) -> dict[str, Any]:
    """A row of GET /api/queues and of the dashboard's `queues`."""
    rec = q.settings
    return {"name": rec.name, "max_running": rec.max_running, "weight": rec.weight, "priority": rec.priority,
            "paused": rec.paused, "explicit": q.explicit, "created_at_ms": rec.created_at_ms if q.explicit else None,
            "counts": {str(status): n for status, n in q.counts.items()}, "ready": q.ready}
