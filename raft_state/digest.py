"""Order-independent state digest: the XOR of one 64-bit hash per record, plus the scalars.

apply keeps the XOR up to date as it replaces records (`old ^ new`), so the digest costs
nothing to read at any index; `full_digest` recomputes it from scratch to cross-check.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from .records import Attempt, Job, KeyRecord, Worker


def _h(kind: bytes, fields: list[Any]) -> int:
    data = kind + msgpack.packb(fields, use_bin_type=True)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _attempt_fields(a: Attempt) -> list[Any]:
    return [a.number, a.worker_id, a.assigned_at_ms, a.started_at_ms, a.ended_at_ms, a.outcome, a.error,
            a.result, a.stats]


def job_hash(j: Job) -> int:
    return _h(b"J", [j.job_id, j.seq, j.key, j.spec_hash, j.created_at_ms, str(j.status), j.attempt, j.failures,
                     j.lost, j.not_before_ms, j.worker_id, j.error, j.finished_at_ms, j.finish_seq,
                     [_attempt_fields(a) for a in j.attempts]])


def worker_hash(w: Worker) -> int:
    return _h(b"W", [w.worker_id, w.seq, w.capacity, list(w.tags), list(w.hardware), w.memory_gb,
                     w.cuda_compute, w.cpus, str(w.status), list(w.running), w.registered_at_ms, w.info])


def key_hash(k: KeyRecord) -> int:
    return _h(b"K", [k.key, k.job_id, k.spec_hash, k.created_at_ms, k.seq])


def token_hash(token_id: str, expires_at_ms: int) -> int:
    return _h(b"T", [token_id, expires_at_ms])


def scalars_hash(fields: list[Any]) -> int:
    return _h(b"S", fields)


def spec_hash(spec_fields: list[Any]) -> bytes:
    """Identity of a job spec: same key with a different hash is KEY_REUSED."""
    return hashlib.blake2b(msgpack.packb(spec_fields, use_bin_type=True), digest_size=16).digest()
