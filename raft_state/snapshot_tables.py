"""The snapshot's tables: their schema, records -> Arrow columns, and Arrow columns -> records.

Column work is where a million-job snapshot spends its time, so both directions move whole
columns: `attrgetter` plus `zip(*rows)` transposes records in C, pyarrow converts each column in
one call, and records are rebuilt positionally with `_make` (no keyword dicts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any, Final

import pyarrow as pa

from .records import Attempt, Job, JobSpec, JobStatus, KeyRecord, Worker, WorkerStatus

_S, _I, _F, _B, _L, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.binary(), pa.list_(pa.string()), pa.bool_()
_SQL: Final = {_S: "VARCHAR", _I: "BIGINT", _F: "DOUBLE", _B: "BLOB", _L: "VARCHAR[]", _BOOL: "BOOLEAN"}

SPEC_COLS: Final = JobSpec.__slots__
#: a job's own fields, in slot order, less `spec` (spread into SPEC_COLS) and `attempts` (their own table)
JOB_OWN: Final = tuple(n for n in Job.__slots__ if n not in ("spec", "attempts"))
_SPEC_TYPES: Final = {"type": _S, "payload": _B, "priority": _I, "timeout_ms": _I, "max_retries": _I,
                      "backoff_ms": _I, "required_tags": _L, "hardware": _L, "min_memory_gb": _F,
                      "min_cuda_compute": _F, "cpus": _I, "depends_on": _L, "deadline_ms": _I, "labels": _B}
_OWN_TYPES: Final = {"job_id": _S, "seq": _I, "key": _S, "spec_hash": _B, "created_at_ms": _I, "status": _S,
                     "attempt": _I, "failures": _I, "lost": _I, "not_before_ms": _I, "worker_id": _S, "error": _S,
                     "finished_at_ms": _I, "finish_seq": _I}

SCHEMAS: Final[dict[str, list[tuple[str, pa.DataType]]]] = {
    "jobs": [*((n, _OWN_TYPES[n]) for n in JOB_OWN), *((n, _SPEC_TYPES[n]) for n in SPEC_COLS), ("ready", _BOOL)],
    "attempts": [("job_id", _S), ("number", _I), ("worker_id", _S), ("assigned_at_ms", _I), ("started_at_ms", _I),
                 ("ended_at_ms", _I), ("outcome", _S), ("error", _S), ("result", _B), ("stats", _B)],
    "workers": [("worker_id", _S), ("seq", _I), ("capacity", _I), ("tags", _L), ("hardware", _L),
                ("memory_gb", _F), ("cuda_compute", _F), ("cpus", _I), ("status", _S), ("running", _L),
                ("registered_at_ms", _I), ("info", _B)],
    "assignments": [("job_id", _S), ("worker_id", _S), ("attempt", _I), ("position", _I)],
    "keys": [("key", _S), ("job_id", _S), ("spec_hash", _B), ("created_at_ms", _I), ("seq", _I)],
    "revoked_tokens": [("token_id", _S), ("expires_at_ms", _I)],
}
assert [n for n, _ in SCHEMAS["attempts"][1:]] == list(Attempt.__slots__)
assert [n for n, _ in SCHEMAS["workers"]] == list(Worker.__slots__)
assert [n for n, _ in SCHEMAS["keys"]] == list(KeyRecord.__slots__)

DDL: Final = "CREATE TABLE meta (k VARCHAR PRIMARY KEY, v BLOB);\n" + "".join(
    f"CREATE TABLE {t} ({', '.join(f'{n} {_SQL[ty]}' for n, ty in cols)});\n" for t, cols in SCHEMAS.items())


CHUNK_ROWS: Final = 8_192


def table(name: str, columns: Sequence[Sequence[Any]]) -> pa.Table:
    """An Arrow table of `columns`, in the schema's order and types.

    Converted CHUNK_ROWS values at a time: `pa.array` holds the GIL for its whole list (1-2 s for
    a million strings or payloads on a loaded 2-core box), and the dump runs beside pysyncobj's
    tick thread, which must not stall past an election timeout."""
    schema = SCHEMAS[name]
    return pa.table({n: _array(col, ty) for (n, ty), col in zip(schema, columns)})


def _array(col: Sequence[Any], ty: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if len(col) <= CHUNK_ROWS:
        return pa.array(col, type=ty)
    return pa.chunked_array([pa.array(col[i:i + CHUNK_ROWS], type=ty) for i in range(0, len(col), CHUNK_ROWS)], type=ty)


def _columns(records: list[Any], names: Sequence[str]) -> list[Sequence[Any]]:
    """One list per field: `map(attrgetter)` runs in C, ~30 ns a value, CHUNK_ROWS per GIL hold."""
    return [_gather(records, attrgetter(n)) for n in names]


def _gather(records: list[Any], get: Any) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(records), CHUNK_ROWS):
        out.extend(map(get, records[i:i + CHUNK_ROWS]))
    return out


def job_columns(jobs: list[Job], ready: Iterable[bool]) -> list[Sequence[Any]]:
    specs = _gather(jobs, attrgetter("spec"))
    return [*_columns(jobs, JOB_OWN), *_columns(specs, SPEC_COLS), list(ready)]


def attempt_columns(jobs: list[Job]) -> list[Sequence[Any]]:
    pairs = [(j.job_id, a) for j in jobs if j.attempts for a in j.attempts]
    return [[p[0] for p in pairs], *_columns([p[1] for p in pairs], Attempt.__slots__)]


def record_columns(records: list[Any], cls: type) -> list[Sequence[Any]]:
    names: tuple[str, ...] = getattr(cls, "__slots__")
    return _columns(records, names)


# ---- back to records ------------------------------------------------------------------------

_STATUS: Final = {s.value: s for s in JobStatus}
_WORKER_STATUS: Final = {s.value: s for s in WorkerStatus}
_EMPTY: Final[tuple[str, ...]] = ()


def pylist(col: pa.ChunkedArray) -> list[Any] | repeat[Any]:
    """A column as Python values; an all-null column costs nothing."""
    if col.null_count == len(col):
        return repeat(None)
    return col.to_pylist()  # type: ignore[no-any-return]


def tuples(col: pa.ChunkedArray) -> list[tuple[str, ...]] | repeat[tuple[str, ...]]:
    """A VARCHAR[] column as tuples, sharing one empty tuple (most lists are empty)."""
    if all(len(chunk.flatten()) == 0 for chunk in col.chunks):
        return repeat(_EMPTY)
    return [tuple(v) if v else _EMPTY for v in col.to_pylist()]


def jobs_from(tbl: pa.Table, attempts: dict[str, tuple[Attempt, ...]]) -> tuple[list[Job], list[str]]:
    """Jobs (in the table's order) and the ids of those that were ready."""
    spec_cols = [tuples(tbl[n]) if _SPEC_TYPES[n] == _L else pylist(tbl[n]) for n in SPEC_COLS]
    specs = list(map(JobSpec._make, *spec_cols)) if tbl.num_rows else []
    own = {n: pylist(tbl[n]) for n in JOB_OWN}
    own["status"] = [_STATUS[s] for s in tbl["status"].to_pylist()]
    ids: list[str] = own["job_id"]  # type: ignore[assignment]
    atts = [attempts.get(i, ()) for i in ids] if attempts else repeat(())
    make = Job._make
    jobs = [make(job_id, seq, key, spec, h, created, status, attempt, failures, lost, nb, wid, err, fin_at, fin_seq, a)
            for job_id, seq, key, h, created, status, attempt, failures, lost, nb, wid, err, fin_at, fin_seq, spec, a
            in zip(*(own[n] for n in JOB_OWN), specs, atts)]
    ready = [i for i, r in zip(ids, tbl["ready"].to_pylist()) if r]
    return jobs, ready


def attempts_from(tbl: pa.Table) -> dict[str, tuple[Attempt, ...]]:
    """Attempts grouped by job, in attempt order (the table is read ordered by job, number)."""
    out: dict[str, list[Attempt]] = {}
    cols = [pylist(tbl[n]) for n in Attempt.__slots__]
    for job_id, attempt in zip(tbl["job_id"].to_pylist(), map(Attempt._make, *cols)):
        out.setdefault(job_id, []).append(attempt)
    return {k: tuple(v) for k, v in out.items()}


def workers_from(tbl: pa.Table) -> list[Worker]:
    cols: list[Any] = []
    for name, ty in SCHEMAS["workers"]:
        if name == "status":
            cols.append([_WORKER_STATUS[s] for s in tbl[name].to_pylist()])
        else:
            cols.append([tuple(v) for v in tbl[name].to_pylist()] if ty == _L else tbl[name].to_pylist())
    return list(map(Worker._make, *cols))


def keys_from(tbl: pa.Table) -> list[KeyRecord]:
    return list(map(KeyRecord._make, *(tbl[n].to_pylist() for n in KeyRecord.__slots__)))
