"""Order-independent state digest: the XOR of one 64-bit hash per record, plus the scalars.

apply keeps the XOR up to date as it replaces records (`old ^ new`), so the digest costs
nothing to read at any index; `full_digest` recomputes it from scratch to cross-check.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from .records import Attempt, Job, JobSpec, KeyRecord, Worker


_blake2b = hashlib.blake2b
#: One reused packer: `msgpack.packb` builds a Packer per call, which cost more than the packing.
#: Safe across threads: `pack` runs in C under the GIL without calling back into Python (no
#: `default` hook), so two threads never interleave inside one call.
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_from_bytes = int.from_bytes


def _h(kind: bytes, fields: list[Any]) -> int:
    return _from_bytes(_blake2b(kind + _pack(fields), digest_size=8).digest(), "little")


def _attempt_fields(a: Attempt) -> list[Any]:
    return [a.number, a.worker_id, a.assigned_at_ms, a.started_at_ms, a.ended_at_ms, a.outcome, a.error,
            a.result, a.stats]


def job_hash(j: Job) -> int:
    """The spec enters through `spec_hash` (computed once, at submit), so a job hashes in ~1 us.
    The status is a StrEnum: msgpack packs it as its plain string value."""
    attempts = j.attempts
    return _from_bytes(_blake2b(b"J" + _pack(
        [j.job_id, j.seq, j.key, j.spec_hash, j.created_at_ms, j.status, j.attempt, j.failures,
         j.lost, j.not_before_ms, j.worker_id, j.error, j.finished_at_ms, j.finish_seq,
         [_attempt_fields(a) for a in attempts] if attempts else []]),
        digest_size=8).digest(), "little")


def worker_hash(w: Worker) -> int:
    return _h(b"W", [w.worker_id, w.seq, w.capacity, list(w.tags), list(w.hardware), w.memory_gb,
                     w.cuda_compute, w.cpus, str(w.status), list(w.running), w.registered_at_ms, w.info])


def key_hash(k: KeyRecord) -> int:
    return _from_bytes(_blake2b(b"K" + _pack([k.key, k.job_id, k.spec_hash, k.created_at_ms, k.seq]),
                                digest_size=8).digest(), "little")


def token_hash(token_id: str, expires_at_ms: int) -> int:
    return _h(b"T", [token_id, expires_at_ms])


def scalars_hash(fields: list[Any]) -> int:
    return _h(b"S", fields)


def spec_hash(spec_fields: list[Any]) -> bytes:
    """Identity of a job spec: same key with a different hash is KEY_REUSED."""
    return _blake2b(_pack(spec_fields), digest_size=16).digest()


def spec_digest(s: JobSpec) -> bytes:
    """`spec_hash(encode_spec(s))` without the generic codec: the same bytes, a third of the time.

    msgpack packs tuples as arrays, exactly as the codec's lists; floats are forced as it does.
    """
    return _blake2b(_pack(
        [s.type, s.payload, s.priority, s.timeout_ms, s.max_retries, s.backoff_ms, s.required_tags, s.hardware,
         float(s.min_memory_gb), float(s.min_cuda_compute), s.cpus, s.depends_on, s.deadline_ms, s.labels]),
        digest_size=16).digest()
