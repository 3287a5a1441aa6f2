"""The snapshot codec: a `State` to a self-contained DuckDB file and back.

`capture(state)` is cheap (shallow copies of dicts of immutable records) and runs where apply
runs; `dump(capture, path, ...)` does the heavy work anywhere else (a background thread) and
writes every table plus `meta` in one transaction, then checkpoints so no `.wal` remains: the
file can be streamed to a follower as is. `load(path)` builds a new State and checks its digest
against the one saved; any problem raises `SnapshotError` and nothing half-loaded escapes.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import msgpack
import pyarrow as pa

from .records import Attempt, Job, JobSpec, JobStatus, KeyRecord, Worker, WorkerStatus
from .state import State

SCHEMA_VERSION: Final = 1


class SnapshotError(RuntimeError):
    """A snapshot that cannot be loaded; the replica must stop rather than run on a half state."""


@dataclass(frozen=True, slots=True)
class Capture:
    jobs: list[Job]
    workers: list[Worker]
    keys: list[KeyRecord]
    revoked: dict[str, int]
    ready: frozenset[str]
    scalars: dict[str, Any]
    digest: int


@dataclass(frozen=True, slots=True)
class Loaded:
    state: State
    raft_index: int
    raft_term: int
    raft_data: bytes
    digest: int


def capture(state: State) -> Capture:
    """A consistent, immutable copy of `state`; call it where apply runs (it must not move meanwhile)."""
    return Capture(
        jobs=list(state.jobs.values()), workers=list(state.workers.values()), keys=list(state.keys.values()),
        revoked=dict(state.revoked), ready=frozenset(state.ready._live),
        scalars={"now_ms": state.now_ms, "paused": state.paused, "cluster_version": state.cluster_version,
                 "job_seq": state.job_seq, "worker_seq": state.worker_seq, "finish_seq": state.finish_seq,
                 "key_seq": state.key_seq, "cascade": [list(x) for x in state._cascade]},
        digest=state.digest())


_TABLES: Final = """
CREATE TABLE meta (k VARCHAR PRIMARY KEY, v BLOB);
CREATE TABLE jobs (job_id VARCHAR, seq BIGINT, key VARCHAR, type VARCHAR, payload BLOB, priority BIGINT,
  timeout_ms BIGINT, max_retries BIGINT, backoff_ms BIGINT, required_tags VARCHAR[], hardware VARCHAR[],
  min_memory_gb DOUBLE, min_cuda_compute DOUBLE, cpus BIGINT, depends_on VARCHAR[], deadline_ms BIGINT, labels BLOB,
  spec_hash BLOB, created_at_ms BIGINT, status VARCHAR, attempt BIGINT, failures BIGINT, lost BIGINT,
  not_before_ms BIGINT, worker_id VARCHAR, error VARCHAR, finished_at_ms BIGINT, finish_seq BIGINT, ready BOOLEAN);
CREATE TABLE attempts (job_id VARCHAR, number BIGINT, worker_id VARCHAR, assigned_at_ms BIGINT,
  started_at_ms BIGINT, ended_at_ms BIGINT, outcome VARCHAR, error VARCHAR, result BLOB, stats BLOB);
CREATE TABLE workers (worker_id VARCHAR, seq BIGINT, capacity BIGINT, tags VARCHAR[], hardware VARCHAR[],
  memory_gb DOUBLE, cuda_compute DOUBLE, cpus BIGINT, status VARCHAR, running VARCHAR[], registered_at_ms BIGINT,
  info BLOB);
CREATE TABLE assignments (job_id VARCHAR, worker_id VARCHAR, attempt BIGINT, position BIGINT);
CREATE TABLE keys (key VARCHAR, job_id VARCHAR, spec_hash BLOB, created_at_ms BIGINT, seq BIGINT);
CREATE TABLE revoked_tokens (token_id VARCHAR, expires_at_ms BIGINT);
"""

_SPEC_COLS: Final = JobSpec.__slots__
_JOB_COLS: Final = ("job_id", "seq", "key", *_SPEC_COLS, "spec_hash", "created_at_ms", "status", "attempt", "failures",
                    "lost", "not_before_ms", "worker_id", "error", "finished_at_ms", "finish_seq")
_ATTEMPT_COLS: Final = Attempt.__slots__
_WORKER_COLS: Final = Worker.__slots__
_KEY_COLS: Final = KeyRecord.__slots__


def dump(cap: Capture, path: str | os.PathLike[str], *, raft_index: int, raft_term: int, raft_data: bytes) -> None:
    """Write `cap` as a DuckDB file at `path` (replaced if present), fsynced. Safe off the apply thread."""
    path = Path(path)
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("SET threads TO 2")
        con.execute(_TABLES)
        con.execute("BEGIN")
        _insert(con, "jobs", _job_columns(cap))
        _insert(con, "attempts", _attempt_columns(cap.jobs))
        _insert(con, "workers", {c: [_cell(getattr(w, c)) for w in cap.workers] for c in _WORKER_COLS})
        running = [(j, w.worker_id, pos) for w in cap.workers for pos, j in enumerate(w.running)]
        by_id = {j.job_id: j for j in cap.jobs if j.status is JobStatus.RUNNING}
        _insert(con, "assignments", {"job_id": [r[0] for r in running], "worker_id": [r[1] for r in running],
                                     "attempt": [by_id[r[0]].attempt if r[0] in by_id else 0 for r in running],
                                     "position": [r[2] for r in running]})
        _insert(con, "keys", {c: [getattr(k, c) for k in cap.keys] for c in _KEY_COLS})
        _insert(con, "revoked_tokens", {"token_id": list(cap.revoked), "expires_at_ms": list(cap.revoked.values())})
        meta = {"schema_version": SCHEMA_VERSION, "raft_index": raft_index, "raft_term": raft_term,
                "digest": cap.digest, **cap.scalars}
        rows = [(k, msgpack.packb(v, use_bin_type=True)) for k, v in meta.items()] + [("raft_data", raft_data)]
        con.executemany("INSERT INTO meta VALUES (?, ?)", rows)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _cell(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, (JobStatus, WorkerStatus)) else value)


def _job_columns(cap: Capture) -> dict[str, list[Any]]:
    jobs = cap.jobs
    cols: dict[str, list[Any]] = {}
    for name in ("job_id", "seq", "key", "spec_hash", "created_at_ms", "attempt", "failures", "lost", "not_before_ms",
                 "worker_id", "error", "finished_at_ms", "finish_seq"):
        cols[name] = [getattr(j, name) for j in jobs]
    cols["status"] = [str(j.status) for j in jobs]
    specs = [j.spec for j in jobs]
    for name in _SPEC_COLS:
        values = [getattr(s, name) for s in specs]
        cols[name] = [list(v) for v in values] if name in ("required_tags", "hardware", "depends_on") else values
    ready = cap.ready
    cols["ready"] = [j.job_id in ready for j in jobs]
    return cols


def _attempt_columns(jobs: list[Job]) -> dict[str, list[Any]]:
    rows = [(j.job_id, a) for j in jobs for a in j.attempts]
    cols: dict[str, list[Any]] = {"job_id": [r[0] for r in rows]}
    for name in _ATTEMPT_COLS:
        cols[name] = [getattr(r[1], name) for r in rows]
    return cols


def _insert(con: duckdb.DuckDBPyConnection, table: str, cols: dict[str, list[Any]]) -> None:
    names = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description]
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    arrays = [pa.array(cols[n], type=_ARROW[types[n]]) for n in names]
    batch = pa.table(dict(zip(names, arrays)))  # noqa: F841  (read by DuckDB's replacement scan)
    con.execute(f"INSERT INTO {table} SELECT * FROM batch")


_ARROW: Final = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BLOB": pa.binary(),
                 "BOOLEAN": pa.bool_(), "VARCHAR[]": pa.list_(pa.string())}


def load(path: str | os.PathLike[str]) -> Loaded:
    """Build a new State from the snapshot at `path`. Raises SnapshotError on any problem."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except Exception as exc:
        raise SnapshotError(f"cannot open snapshot {path}: {exc}") from exc
    try:
        return _load(con)
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"snapshot {path} is unreadable: {type(exc).__name__}: {exc}") from exc
    finally:
        con.close()


def _load(con: duckdb.DuckDBPyConnection) -> Loaded:
    meta_rows = dict(con.execute("SELECT k, v FROM meta").fetchall())
    raft_data = meta_rows.pop("raft_data", b"")
    meta = {k: msgpack.unpackb(v, raw=False) for k, v in meta_rows.items()}
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise SnapshotError(f"snapshot schema {meta.get('schema_version')} is not {SCHEMA_VERSION}")
    state = State()
    for name in ("now_ms", "paused", "cluster_version", "job_seq", "worker_seq", "finish_seq", "key_seq"):
        setattr(state, name, meta[name])
    attempts: dict[str, list[Attempt]] = {}
    for row in con.execute(f"SELECT {', '.join(('job_id', *_ATTEMPT_COLS))} FROM attempts ORDER BY job_id, number").fetchall():
        attempts.setdefault(row[0], []).append(Attempt(**dict(zip(_ATTEMPT_COLS, row[1:]))))
    ready_ids: list[tuple[int, str]] = []
    n_spec = len(_SPEC_COLS)
    cols = ", ".join(_JOB_COLS) + ", ready"
    for row in con.execute(f"SELECT {cols} FROM jobs ORDER BY seq").fetchall():
        spec_vals = list(row[3:3 + n_spec])
        for i in (_SPEC_COLS.index("required_tags"), _SPEC_COLS.index("hardware"), _SPEC_COLS.index("depends_on")):
            spec_vals[i] = tuple(spec_vals[i])
        spec = JobSpec(**dict(zip(_SPEC_COLS, spec_vals)))
        rest = dict(zip(_JOB_COLS[3 + n_spec:], row[3 + n_spec:-1]))
        rest["status"] = JobStatus(rest["status"])
        job = Job(job_id=row[0], seq=row[1], key=row[2], spec=spec, attempts=tuple(attempts.get(row[0], ())), **rest)
        state._put_job(job)
        if row[-1]:
            ready_ids.append((job.seq, job.job_id))
    for row in con.execute(f"SELECT {', '.join(_WORKER_COLS)} FROM workers ORDER BY seq").fetchall():
        fields = dict(zip(_WORKER_COLS, row))
        for name in ("tags", "hardware", "running"):
            fields[name] = tuple(fields[name])
        fields["status"] = WorkerStatus(fields["status"])
        state._put_worker(Worker(**fields))
    for row in con.execute(f"SELECT {', '.join(_KEY_COLS)} FROM keys ORDER BY seq").fetchall():
        rec = KeyRecord(**dict(zip(_KEY_COLS, row)))
        state._put_key(rec)
        state._key_order.append(rec.key)
    for token_id, exp in con.execute("SELECT token_id, expires_at_ms FROM revoked_tokens ORDER BY token_id").fetchall():
        state._put_token(token_id, exp)
    state._cascade.extend((a, b) for a, b in meta["cascade"])
    _rebuild_indexes(state, {job_id for _, job_id in ready_ids})
    if state.digest() != meta["digest"]:
        raise SnapshotError(f"snapshot digest mismatch: saved {meta['digest']:x}, rebuilt {state.digest():x}")
    return Loaded(state, int(meta["raft_index"]), int(meta["raft_term"]), bytes(raft_data), state.digest())


def _rebuild_indexes(state: State, ready: set[str]) -> None:
    """Derive the queues and DAG maps that apply keeps, from the records, deterministically."""
    finished: list[tuple[int, str]] = []
    doomed = {job_id for job_id, _ in state._cascade}  # a failed dependency may be pruned already
    for job in state.jobs.values():  # jobs were inserted in seq order
        if job.finish_seq is not None:
            finished.append((job.finish_seq, job.job_id))
            continue
        if job.status is not JobStatus.PENDING:
            continue
        unmet = 0
        for dep_id in job.spec.depends_on:
            dep = state.jobs.get(dep_id)
            if dep is None or dep.status is JobStatus.COMPLETED:
                continue
            if not dep.is_final:
                state._dependents.setdefault(dep_id, []).append(job.job_id)
            unmet += 1
        if job.job_id in doomed:
            unmet += 1
        if unmet:
            state._unmet[job.job_id] = unmet
        if job.spec.deadline_ms is not None and job.attempt == 0:
            state._deadlines.append((job.spec.deadline_ms, job.seq, job.job_id))
        if job.job_id in ready:
            state.ready.add(job.job_id, job.spec.priority, job.seq, job.spec.placement_class())
        elif not unmet:
            state._backoff.append((job.not_before_ms, job.seq, job.job_id))
    heapq.heapify(state._deadlines)
    heapq.heapify(state._backoff)
    finished.sort()
    state._finished.extend(job_id for _, job_id in finished)
