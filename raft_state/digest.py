"""Order-independent state digest: the XOR of one 64-bit hash per record, plus the scalars.

apply keeps the XOR up to date as it replaces records (`old ^ new`), so the digest costs
nothing to read at any index; `full_digest` recomputes it from scratch to cross-check.

A record hash is XXH3-64 of the record's msgpack bytes, seeded by the record kind. The digest
detects divergence between replicas and between a state and its snapshot; it is not a defence
against an adversary (nobody can write records but the log). XXH3 costs ~40 ns on a job's ~100
bytes where BLAKE2b cost ~700 ns: at 1M jobs plus 0.5M keys that is a second of every snapshot
load and dump check (`bench/bench_state.py`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
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


def _packer() -> Callable[[Any], bytes]:
    """A reused packer (`msgpack.packb` builds a Packer per call, which cost more than the packing).

    Never shared by two threads: a Packer writes into one buffer, and `pack` is not atomic under
    the GIL. Packing a record (a tuple subclass) allocates an iterator, the allocation can start a
    garbage collection, the collection runs Python code (finalizers, weakref callbacks), and there
    the GIL can pass to another thread; a second thread packing meanwhile appended to the same
    buffer and reset it, so both calls returned wrong bytes. That was the snapshot digest
    mismatch: a replica's incremental digest took one wrong key hash while the event loop read
    `state.digest()` (tests/raft_state/test_digest_threads.py)."""
    pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True, autoreset=True).pack
    return pack


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.pack = _packer()


#: the module's hash functions pack with their calling thread's packer (~80 ns a lookup)
_local: Final = _PerThread()


def _h(kind: int, fields: list[Any]) -> int:
    return _xxh3(_local.pack(fields), kind)


def job_hash(j: Job) -> int:
    """The fields before `spec`, packed as one array: attempts pack as arrays of their fields. The
    spec enters through `spec_hash` (computed once, at submit), so a job hashes in ~0.6 us. The
    status is a StrEnum: msgpack packs it as its plain string value."""
    return _xxh3(_local.pack(j[:_JOB_HASHED]), _JOB)


_JOB_HASHED: Final = Job.FIELDS.index("spec")
assert Job.FIELDS[_JOB_HASHED:] == ("spec",)


def worker_hash(w: Worker) -> int:
    """Fields added later (`plugins`) are hashed only when set: at their default a worker hashes as
    it did before they existed, so a state loaded from an older snapshot keeps its digest."""
    fields = [w.worker_id, w.seq, w.capacity, list(w.tags), list(w.hardware), w.memory_gb, w.cuda_compute, w.cpus,
              str(w.status), list(w.running), w.registered_at_ms, w.info]
    if w.plugins or w.devices or w.held:
        fields.append(list(w.plugins))
    if w.devices or w.held:
        fields.append([[d.kind, d.index, d.model, d.memory_gb, d.compute] for d in w.devices])
        fields.append([[job_id, list(held)] for job_id, held in w.held])
    return _h(_WORKER, fields)


def key_hash(k: KeyRecord) -> int:
    """Every field, in order: a record is a tuple and packs as the array of its fields."""
    return _xxh3(_local.pack(k), _KEY)


def token_hash(token_id: str, expires_at_ms: int) -> int:
    return _h(_TOKEN, [token_id, expires_at_ms])


class BulkHashes:
    """`job_hash` and `key_hash` over a packer of their own, for one thread's loop over many
    records: the same hashes without the per-call thread-local lookup (~15% of a job hash)."""

    __slots__ = ("job", "key")

    def __init__(self) -> None:
        pack = _packer()
        self.job: Callable[[Job], int] = lambda j: _xxh3(pack(j[:_JOB_HASHED]), _JOB)
        self.key: Callable[[KeyRecord], int] = lambda k: _xxh3(pack(k), _KEY)


def records_digest(jobs: Iterable[Job], workers: Iterable[Worker], keys: Iterable[KeyRecord],
                   revoked: Mapping[str, int]) -> int:
    """The XOR of every record's hash: the digest less its scalars."""
    bulk = BulkHashes()
    return (reduce(xor, map(bulk.job, jobs), 0) ^ reduce(xor, map(worker_hash, workers), 0)
            ^ reduce(xor, map(bulk.key, keys), 0) ^ reduce(xor, map(token_hash, revoked, revoked.values()), 0))


def scalars_hash(fields: list[Any]) -> int:
    return _h(_SCALARS, fields)


def spec_hash(spec_fields: list[Any]) -> bytes:
    """Identity of a job spec: same key with a different hash is KEY_REUSED."""
    return _blake2b(_local.pack(spec_fields), digest_size=16).digest()


def spec_digest(s: JobSpec) -> bytes:
    """`spec_hash(encode_spec(s))` without the generic codec: the same bytes, a third of the time.

    msgpack packs tuples as arrays, exactly as the codec's lists; floats are forced as it does.
    """
    fields = [s.type, s.payload, s.priority, s.timeout_ms, s.max_retries, s.backoff_ms, s.required_tags, s.hardware,
              float(s.min_memory_gb), float(s.min_cuda_compute), s.cpus, s.depends_on, s.deadline_ms, s.labels]
    if s[_SPEC_BASE:] != _SPEC_TAIL_DEFAULTS:  # fields added later, as the codec encodes them: trailing defaults off
        tail = [float(s.memory_gb), s.gpus, float(s.gpu_memory_gb), float(s.gpu_compute), s.gpu_kind, s.pin_cpus,
                s.queue]
        while tail[-1] == _SPEC_TAIL_DEFAULTS[len(tail) - 1]:
            tail.pop()
        fields += tail
    return _blake2b(_local.pack(fields), digest_size=16).digest()


_SPEC_BASE: Final = len(JobSpec.FIELDS) - len(JobSpec.DEFAULTS)
_SPEC_TAIL_DEFAULTS: Final = tuple(JobSpec.DEFAULTS[n] for n in JobSpec.FIELDS[_SPEC_BASE:])
