"""Order-independent state digest: the XOR of one 64-bit hash per record, plus the scalars.

apply keeps the XOR up to date as it replaces records (`old ^ new`), so the digest costs
nothing to read at any index; `full_digest` recomputes it from scratch to cross-check.

A record hash is XXH3-64 of the record's msgpack bytes, seeded by the record kind. The digest
detects divergence between replicas and between a state and its snapshot; it is not a defence
against an adversary (nobody can write records but the log). XXH3 costs ~40 ns on a job's ~100
bytes where BLAKE2b cost ~700 ns: at 1M jobs plus 0.5M keys that is a second of every snapshot
load and dump check (`tests/bench/bench_state.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from functools import reduce
from operator import xor
from typing import Any, Final

import msgpack
import xxhash

from .records import Job, JobSpec, KeyRecord, Worker


_blake2b = hashlib.blake2b
_xxh3: Final = xxhash.xxh3_64_intdigest
#: seeds, one per record kind, so a job and a key that pack alike never hash alike
_JOB, _WORKER, _KEY, _TOKEN, _SCALARS = (ord(c) for c in "JWKTS")
#: One reused packer: `msgpack.packb` builds a Packer per call, which cost more than the packing.
#: Safe across threads: `pack` runs in C under the GIL without calling back into Python (no
#: `default` hook), so two threads never interleave inside one call.
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _h(kind: int, fields: list[Any]) -> int:
    return _xxh3(_pack(fields), kind)


def job_hash(j: Job) -> int:
    """The fields before `spec`, packed as one array: attempts pack as arrays of their fields. The
    spec enters through `spec_hash` (computed once, at submit), so a job hashes in ~0.6 us. The
    status is a StrEnum: msgpack packs it as its plain string value."""
    return _xxh3(_pack(j[:_JOB_HASHED]), _JOB)


_JOB_HASHED: Final = Job.FIELDS.index("spec")
assert Job.FIELDS[_JOB_HASHED:] == ("spec",)


def worker_hash(w: Worker) -> int:
    return _h(_WORKER, [w.worker_id, w.seq, w.capacity, list(w.tags), list(w.hardware), w.memory_gb,
                     w.cuda_compute, w.cpus, str(w.status), list(w.running), w.registered_at_ms, w.info])


def key_hash(k: KeyRecord) -> int:
    """Every field, in order: a record is a tuple and packs as the array of its fields."""
    return _xxh3(_pack(k), _KEY)


def token_hash(token_id: str, expires_at_ms: int) -> int:
    return _h(_TOKEN, [token_id, expires_at_ms])


def records_digest(jobs: Iterable[Job], workers: Iterable[Worker], keys: Iterable[KeyRecord],
                   revoked: Mapping[str, int]) -> int:
    """The XOR of every record's hash: the digest less its scalars."""
    return (reduce(xor, map(job_hash, jobs), 0) ^ reduce(xor, map(worker_hash, workers), 0)
            ^ reduce(xor, map(key_hash, keys), 0) ^ reduce(xor, map(token_hash, revoked, revoked.values()), 0))


def scalars_hash(fields: list[Any]) -> int:
    return _h(_SCALARS, fields)


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
