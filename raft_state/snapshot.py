"""The snapshot codec: a `State` to a self-contained DuckDB file and back.

`capture(state)` is cheap (shallow copies of dicts of immutable records) and runs where apply
runs; `dump(capture, path, ...)` does the heavy work anywhere else (a background thread) and
writes every table plus `meta` in one transaction, then checkpoints so no `.wal` remains: the
file can be streamed to a follower as is. `load(path)` builds a new State and checks its digest
against the one saved; any problem raises `SnapshotError` and nothing half-loaded escapes.
"""

from __future__ import annotations

import atexit
import gc
import os
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import islice
from operator import attrgetter, lt, xor
from pathlib import Path
from typing import Any, Final

import duckdb
import msgpack
import pyarrow as pa

from . import flow_tables, queues
from . import snapshot_tables as T
from .digest import BulkHashes, records_digest, scalars_hash
from .records import Job, JobStatus, KeyRecord, Worker
from .state import State

#: 2: jobs columns in record order; readiness derived at dump from the DAG and backoff indexes
#: 3: record hashes are XXH3 (the saved digest of a version-2 file would not match)
#: 5: jobs' reservation and queue columns, workers' devices and held devices
#: 6: the queues table (named queues' records)
SCHEMA_VERSION: Final = 6
#: 4 also: groups, schedules, schedule_runs, reruns (a version-3 file loads without them)
#: schemas load reads: 3 lacks workers.plugins, which loads as empty; older ones lack what later ones added
READABLE_SCHEMAS: Final = frozenset({3, 4, 5, 6})
#: the queues table; a file before schema 6 has none and loads as a state without queue records
QUEUES_DDL: Final = ("CREATE TABLE queues (name VARCHAR, created_at_ms BIGINT, max_running BIGINT, weight BIGINT, "
                     "priority BIGINT, paused BOOLEAN);\n")


class SnapshotError(RuntimeError):
    """A snapshot that cannot be loaded; the replica must stop rather than run on a half state."""


@dataclass(frozen=True, slots=True)
class Capture:
    jobs: list[Job]
    workers: list[Worker]
    keys: list[KeyRecord]
    revoked: dict[str, int]
    waiting: list[str]  #: pending jobs with unmet (or failed) dependencies
    backoff: list[tuple[int, int, str]]  #: the backoff heap: (not_before_ms, seq, job_id), lazily deleted
    scalars: dict[str, Any]
    scalars_hash: int  #: their part of the digest
    digest: int
    flows: flow_tables.Captured | None = None  #: groups, schedules, runs, reruns
    queues: tuple[queues.QueueRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class Loaded:
    state: State
    raft_index: int
    raft_term: int
    raft_data: bytes
    digest: int


def capture(state: State) -> Capture:
    """A consistent, immutable copy of `state`; call it where apply runs (it must not move meanwhile).

    Copies references only, O(jobs) in C (a few ms at 1M jobs): which pending jobs are ready is not
    copied but derived later in `dump`, from the far smaller DAG-waiting set and backoff heap.
    """
    return Capture(
        jobs=list(state.jobs.values()), workers=list(state.workers.values()), keys=list(state.keys.values()),
        revoked=dict(state.revoked), waiting=list(state._unmet), backoff=list(state._backoff),
        scalars={"now_ms": state.now_ms, "paused": state.paused, "cluster_version": state.cluster_version,
                 "job_seq": state.job_seq, "worker_seq": state.worker_seq, "finish_seq": state.finish_seq,
                 "key_seq": state.key_seq, "cascade": [list(x) for x in state._cascade]},
        scalars_hash=scalars_hash(state._scalars()), digest=state.digest(), flows=flow_tables.capture(state),
        queues=tuple(state.queues.values()))


def capture_digest(cap: Capture) -> int:
    """The digest recomputed from the captured records, as `State.full_digest` does from a state."""
    flows = cap.flows.digest_part() if cap.flows is not None else 0
    return (records_digest(cap.jobs, cap.workers, cap.keys, cap.revoked) ^ flows ^ queues.records_hash(list(cap.queues))
            ^ cap.scalars_hash)


class _Xor:
    """The XOR of record hashes seen so far (the dump's streams report each chunk)."""

    def __init__(self) -> None:
        self.x = 0

    def of(self, hash_record: Callable[[Any], int]) -> Callable[[Sequence[Any]], None]:
        def see(chunk: Sequence[Any]) -> None:
            self.x ^= reduce(xor, map(hash_record, chunk), 0)
        return see


def _ready_flags(cap: Capture) -> list[bool]:
    """Pending jobs are ready unless they wait on dependencies or sit in backoff (a live heap entry)."""
    waiting = set(cap.waiting)
    in_backoff = {(job_id, nb, seq) for nb, seq, job_id in cap.backoff}
    pending = JobStatus.PENDING
    return [j.status is pending and j.job_id not in waiting and (j.job_id, j.not_before_ms, j.seq) not in in_backoff
            for j in cap.jobs]


def dump(cap: Capture, path: str | os.PathLike[str], *, raft_index: int, raft_term: int, raft_data: bytes) -> None:
    """Write `cap` as a DuckDB file at `path` (replaced if present), fsynced. Safe off the apply thread.

    Checks that the captured records hash to the captured digest, chunk by chunk as they stream
    into DuckDB (which works meanwhile without the GIL), before committing: on a mismatch it raises
    SnapshotError and leaves no file. A snapshot its own load would refuse is never published."""
    path = Path(path)
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    hashed = _Xor()
    attempt_of = {j.job_id: j.attempt for j in cap.jobs if j.status is JobStatus.RUNNING}
    running = [(job_id, w.worker_id, attempt_of.get(job_id, 0), pos) for w in cap.workers
               for pos, job_id in enumerate(w.running)]
    tables = {
        "jobs": T.stream("jobs", T.jobs(cap.jobs, _ready_flags(cap), seen=hashed.of(BulkHashes().job))),
        "attempts": T.stream("attempts", T.rows(T.attempt_rows(cap.jobs))),
        "workers": T.stream("workers", T.rows([T.pack_worker_extras(w) for w in cap.workers])),
        "assignments": T.stream("assignments", T.rows(running)),
        "keys": T.stream("keys", T.rows(cap.keys, seen=hashed.of(BulkHashes().key))),
        "revoked_tokens": T.stream("revoked_tokens", T.rows(list(cap.revoked.items()))),
    }
    meta = {"schema_version": SCHEMA_VERSION, "raft_index": raft_index, "raft_term": raft_term,
            "digest": cap.digest, **cap.scalars}
    rows = [(k, msgpack.packb(v, use_bin_type=True)) for k, v in meta.items()] + [("raft_data", raft_data)]
    con = duckdb.connect(str(path))
    try:
        con.execute("SET threads TO 2")
        con.execute(T.DDL + flow_tables.DDL + QUEUES_DDL)
        con.execute("BEGIN")
        if cap.flows is not None:
            tables.update(flow_tables.tables(cap.flows))
        for name, tbl in tables.items():
            con.register("batch", tbl)
            con.execute(f"INSERT INTO {name} SELECT * FROM batch")
            con.unregister("batch")
        con.executemany("INSERT INTO meta VALUES (?, ?)", rows)
        if cap.queues:
            con.executemany("INSERT INTO queues VALUES (?, ?, ?, ?, ?, ?)", [tuple(q) for q in cap.queues])
        rebuilt = hashed.x ^ records_digest((), cap.workers, (), cap.revoked) ^ cap.scalars_hash
        rebuilt ^= queues.records_hash(list(cap.queues))
        rebuilt ^= cap.flows.digest_part() if cap.flows is not None else 0
        if rebuilt != cap.digest:
            raise SnapshotError(f"captured records hash to {rebuilt:x}, the state's digest was {cap.digest:x}")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
        raise
    finally:
        con.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def load(path: str | os.PathLike[str]) -> Loaded:
    """Build a new State from the snapshot at `path`. Raises SnapshotError on any problem.

    Runs with the cyclic collector off and, on success, freezes what exists (`gc.freeze`, process
    wide): everything the load allocated sits uncollected in the youngest generation, and the first
    allocation after the collector comes back on would walk all of it (~0.7 s at 1M jobs) to find
    nothing, since records hold no cycles. Frozen objects are still freed by reference counting,
    and given back to the collector at exit (DuckDB's bindings report objects that finalization
    cannot free as leaks)."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except Exception as exc:
        raise SnapshotError(f"cannot open snapshot {path}: {exc}") from exc
    collecting = gc.isenabled()
    gc.disable()
    try:
        loaded = _load(con)
        gc.freeze()
        atexit.unregister(gc.unfreeze)  # registered once however many loads
        atexit.register(gc.unfreeze)
        return loaded
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"snapshot {path} is unreadable: {type(exc).__name__}: {exc}") from exc
    finally:
        con.close()
        if collecting:
            gc.enable()


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def _load(con: duckdb.DuckDBPyConnection) -> Loaded:
    meta_rows = dict(con.execute("SELECT k, v FROM meta").fetchall())
    raft_data = meta_rows.pop("raft_data", b"")
    meta = {k: msgpack.unpackb(v, raw=False) for k, v in meta_rows.items()}
    if meta.get("schema_version") not in READABLE_SCHEMAS:
        raise SnapshotError(f"snapshot schema {meta.get('schema_version')} is not one of {sorted(READABLE_SCHEMAS)}")
    state = State()
    for name in ("now_ms", "paused", "cluster_version", "job_seq", "worker_seq", "finish_seq", "key_seq"):
        setattr(state, name, meta[name])
    for worker in sorted(T.workers_from(_arrow(con, "SELECT * FROM workers")), key=attrgetter("seq")):
        state._put_worker(worker)
    keys = T.keys_from(_arrow(con, "SELECT * FROM keys ORDER BY seq"))
    state.keys = dict(zip(map(_KEY, keys), keys))
    state._key_order.extend(state.keys)
    if len(state.keys) != len(keys):
        raise SnapshotError("snapshot holds an idempotency key twice")
    state._xor ^= reduce(xor, map(BulkHashes().key, keys), 0)
    for token_id, exp in con.execute("SELECT token_id, expires_at_ms FROM revoked_tokens ORDER BY token_id").fetchall():
        state._put_token(token_id, exp)
    state._cascade.extend((a, b) for a, b in meta["cascade"])
    _install_jobs(con, state)
    flow_tables.load(con, state)
    if meta["schema_version"] >= 6:
        for row in con.execute("SELECT * FROM queues ORDER BY name").fetchall():
            queues.put_queue(state, queues.QueueRecord._make(*row))
    if state.digest() != meta["digest"]:
        raise SnapshotError(f"snapshot digest mismatch: saved {meta['digest']:x}, rebuilt {state.digest():x}")
    return Loaded(state, int(meta["raft_index"]), int(meta["raft_term"]), bytes(raft_data), state.digest())


_KEY: Final = attrgetter("key")
_PENDING: Final = f"status = '{JobStatus.PENDING.value}'"


def _install_jobs(con: duckdb.DuckDBPyConnection, state: State) -> None:
    """Jobs into a fresh state, with the queues and DAG maps that apply keeps.

    Built from columns, not by walking a million records: DuckDB selects and orders each index
    (ready jobs grouped by placement class, deadlines, backoffs, finish order), so Python touches
    only the jobs an index holds. Every record hash is recomputed, as the digest contract says."""
    attempts = T.attempts_from(_arrow(con, "SELECT * FROM attempts ORDER BY job_id, number"))
    # dump writes jobs in seq order and DuckDB scans preserve insertion order; sort only if that broke
    jobs: list[Job] = []
    for batch in con.sql("SELECT * FROM jobs").to_arrow_reader(LOAD_BATCH_ROWS):  # never the whole table in Arrow
        jobs.extend(T.jobs_from(pa.Table.from_batches([batch]), attempts))
    # the records' own id strings by rowid (scan order): indexes share them instead of holding copies
    id_at = list(map(_JOB_ID, jobs)).__getitem__
    seqs = list(map(_SEQ, jobs))
    if not all(map(lt, seqs, islice(seqs, 1, None))):
        jobs.sort(key=_SEQ)
    by_id = state.jobs = dict(zip(map(_JOB_ID, jobs), jobs))
    if len(by_id) != len(jobs):
        raise SnapshotError("snapshot holds a job id twice")
    state._xor ^= reduce(xor, map(BulkHashes().job, jobs), 0)
    has_queue = bool(con.execute("SELECT 1 FROM duckdb_columns() WHERE table_name = 'jobs' AND column_name = 'queue'"
                                 ).fetchall())
    queue_col = "queue" if has_queue else "'default'"
    for queue, status, n in con.execute(f"SELECT {queue_col}, status, count(*) FROM jobs GROUP BY ALL ORDER BY ALL"
                                        ).fetchall():
        state.counts[JobStatus(status)] += n
        state.queue_counts[(queue, JobStatus(status))] = n
    state._finished.extend(map(id_at, _ints(con, "SELECT rowid FROM jobs WHERE finish_seq IS NOT NULL ORDER BY finish_seq")))

    # apply counts a pending job's unfinished dependencies and its failed ones; each failed one (pruned
    # or not) queued exactly one cascade entry for it, and completed ones no longer count
    unmet_of: dict[str, int] = {}
    for job_id, depends_on in con.execute(
            f"SELECT job_id, depends_on FROM jobs WHERE {_PENDING} AND len(depends_on) > 0 ORDER BY seq").fetchall():
        unmet = 0
        for dep_id in depends_on:
            dep = by_id.get(dep_id)
            if dep is None or dep.is_final:
                continue
            state._dependents.setdefault(dep_id, []).append(job_id)
            unmet += 1
        if unmet:
            unmet_of[job_id] = unmet
    in_seq_order = True  # so far: the query's order
    for job_id, _ in state._cascade:
        job = by_id.get(job_id)
        if job is not None and job.status is JobStatus.PENDING:
            in_seq_order &= job_id in unmet_of
            unmet_of[job_id] = unmet_of.get(job_id, 0) + 1
    state._unmet.update(unmet_of.items() if in_seq_order else
                        sorted(unmet_of.items(), key=lambda kv: by_id[kv[0]].seq))

    # ordered lists are valid heaps: no heapify needed
    state._deadlines.extend(con.execute(
        f"SELECT deadline_ms, seq, job_id FROM jobs WHERE {_PENDING} AND deadline_ms IS NOT NULL AND attempt = 0 "
        "ORDER BY deadline_ms, seq").fetchall())
    state._backoff.extend(row for row in con.execute(
        f"SELECT not_before_ms, seq, job_id FROM jobs WHERE {_PENDING} AND NOT ready ORDER BY not_before_ms, seq"
    ).fetchall() if row[2] not in unmet_of)
    _install_ready(con, state, id_at)


def _ints(con: duckdb.DuckDBPyConnection, sql: str) -> list[int]:
    return _arrow(con, sql).column(0).to_pylist()  # type: ignore[no-any-return]


#: rows per Arrow batch read at load: ~20 MB of Arrow at a time, not the whole jobs table (~300 MB at 1M)
LOAD_BATCH_ROWS: Final = 65_536
_SEQ: Final = attrgetter("seq")
_JOB_ID: Final = attrgetter("job_id")
_CLASS_NAMES: Final = ("required_tags", "hardware", "min_memory_gb", "min_cuda_compute", "cpus", "memory_gb", "gpus",
                       "gpu_memory_gb", "gpu_compute", "gpu_kind", "queue")
_CLASS_SQL_DEFAULTS: Final = {"memory_gb": "0.0", "gpus": "0", "gpu_memory_gb": "0.0", "gpu_compute": "0.0",
                              "gpu_kind": "''", "queue": "'default'"}


def _install_ready(con: duckdb.DuckDBPyConnection, state: State, id_at: Callable[[int], str]) -> None:
    """The ready queue, one class at a time: DuckDB numbers the placement classes (a few distinct
    rows, in a fixed order) and orders each class's jobs by (-priority, seq), the heap order the
    queue keeps. A hash join onto the numbered classes, not a window over a million rows sorted by
    their list columns, which cost twice as much. An older file's missing columns read as their defaults."""
    present = {row[0] for row in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'jobs'"
                                             ).fetchall()}
    cols = [c for c in _CLASS_NAMES if c in present]
    picked = ", ".join(c if c in present else f"{_CLASS_SQL_DEFAULTS[c]} AS {c}" for c in _CLASS_NAMES)
    classes = f"""
        WITH klass AS (SELECT {picked}, row_number() OVER (ORDER BY {', '.join(cols)}) AS grp
                       FROM (SELECT DISTINCT {', '.join(cols)} FROM jobs WHERE ready))"""
    same_class = " AND ".join(f"j.{c} IS NOT DISTINCT FROM k.{c}" for c in cols)
    tbl = _arrow(con, f"""{classes}
        SELECT j.rowid AS pos, -j.priority AS neg_priority, j.seq, k.grp
        FROM jobs j JOIN klass k ON {same_class} WHERE j.ready ORDER BY grp, neg_priority, seq""")
    neg, seqs, grp = (tbl[n].to_pylist() for n in ("neg_priority", "seq", "grp"))
    ids = list(map(id_at, tbl["pos"].to_pylist()))
    start = 0
    for (tags, hardware, min_memory_gb, min_cuda_compute, cpus, memory_gb, gpus, gpu_memory_gb, gpu_compute, gpu_kind,
         queue, g) in con.execute(f"{classes} SELECT * FROM klass ORDER BY grp").fetchall():
        end = bisect_right(grp, g, lo=start)
        klass = (tuple(tags), tuple(hardware), float(min_memory_gb), float(min_cuda_compute), cpus, float(memory_gb),
                 gpus, float(gpu_memory_gb), float(gpu_compute), gpu_kind, queue)
        state.ready.add_ordered(klass, ids[start:end], neg[start:end], seqs[start:end])
        start = end
    if start != len(grp):
        raise SnapshotError("ready jobs outside every placement class")
