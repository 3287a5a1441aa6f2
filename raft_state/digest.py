"""Order-independent state digest: the XOR of one 64-bit hash per record, plus the scalars.

apply keeps the XOR up to date as it replaces records (`old ^ new`), so the digest costs
nothing to read at any index; `full_digest` recomputes it from scratch to cross-check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from functools import reduce
from operator import xor
from typing import Any, Final

import msgpack

from .records import Job, JobSpec, KeyRecord, Worker


_blake2b = hashlib.blake2b
#: One reused packer: `msgpack.packb` builds a Packer per call, which cost more than the packing.
#: Safe across threads: `pack` runs in C under the GIL without calling back into Python (no
#: `default` hook), so two threads never interleave inside one call.
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_from_bytes = int.from_bytes


def _h(kind: bytes, fields: list[Any]) -> int:
    return _from_bytes(_blake2b(kind + _pack(fields), digest_size=8).digest(), "little")


def job_hash(j: Job) -> int:
    """The fields before `spec`, packed as one array: attempts pack as arrays of their fields. The
    spec enters through `spec_hash` (computed once, at submit), so a job hashes in ~1 us. The
    status is a StrEnum: msgpack packs it as its plain string value."""
    return _from_bytes(_blake2b(b"J" + _pack(j[:_JOB_HASHED]), digest_size=8).digest(), "little")


_JOB_HASHED: Final = Job.FIELDS.index("spec")
assert Job.FIELDS[_JOB_HASHED:] == ("spec",)


def worker_hash(w: Worker) -> int:
    return _h(b"W", [w.worker_id, w.seq, w.capacity, list(w.tags), list(w.hardware), w.memory_gb,
                     w.cuda_compute, w.cpus, str(w.status), list(w.running), w.registered_at_ms, w.info])


def key_hash(k: KeyRecord) -> int:
    """Every field, in order: a record is a tuple and packs as the array of its fields."""
    return _from_bytes(_blake2b(b"K" + _pack(k), digest_size=8).digest(), "little")


def token_hash(token_id: str, expires_at_ms: int) -> int:
    return _h(b"T", [token_id, expires_at_ms])


def records_digest(jobs: Iterable[Job], workers: Iterable[Worker], keys: Iterable[KeyRecord],
                   revoked: Mapping[str, int]) -> int:
    """The XOR of every record's hash: the digest less its scalars."""
    return (reduce(xor, map(job_hash, jobs), 0) ^ reduce(xor, map(worker_hash, workers), 0)
            ^ reduce(xor, map(key_hash, keys), 0) ^ reduce(xor, map(token_hash, revoked, revoked.values()), 0))


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
