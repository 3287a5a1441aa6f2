"""The snapshot's tables: their schema, records -> Arrow columns, and Arrow columns -> records.

Column work is where a million-job snapshot spends its time, so both directions move whole
columns: records are tuples, `map(itemgetter(k))` takes each column in C, pyarrow converts a
column chunk in one call, and `tuple.__new__` mapped over zipped columns rebuilds the records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

import msgpack

from .records import Attempt, Device, Job, JobSpec, JobStatus, KeyRecord, Worker, WorkerStatus

_S, _I, _F, _B, _L, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.binary(), pa.list_(pa.string()), pa.bool_()
_SQL: Final = {_S: "VARCHAR", _I: "BIGINT", _F: "DOUBLE", _B: "BLOB", _L: "VARCHAR[]", _BOOL: "BOOLEAN"}

SPEC_COLS: Final = JobSpec.FIELDS
#: a job's own fields, in slot order, less `spec` (spread into SPEC_COLS) and `attempts` (their own table)
JOB_OWN: Final = tuple(n for n in Job.FIELDS if n not in ("spec", "attempts"))
assert Job.FIELDS == (*JOB_OWN, "attempts", "spec")
_SPEC_TYPES: Final = {"type": _S, "payload": _B, "priority": _I, "timeout_ms": _I, "max_retries": _I,
                      "backoff_ms": _I, "required_tags": _L, "hardware": _L, "min_memory_gb": _F,
                      "min_cuda_compute": _F, "cpus": _I, "depends_on": _L, "deadline_ms": _I, "labels": _B,
                      "memory_gb": _F, "gpus": _I, "gpu_memory_gb": _F, "gpu_compute": _F, "gpu_kind": _S,
                      "pin_cpus": _BOOL, "queue": _S}
_OWN_TYPES: Final = {"job_id": _S, "seq": _I, "key": _S, "spec_hash": _B, "created_at_ms": _I, "status": _S,
                     "attempt": _I, "failures": _I, "lost": _I, "not_before_ms": _I, "worker_id": _S, "error": _S,
                     "finished_at_ms": _I, "finish_seq": _I}

SCHEMAS: Final[dict[str, list[tuple[str, pa.DataType]]]] = {
    "jobs": [*((n, _OWN_TYPES[n]) for n in JOB_OWN), *((n, _SPEC_TYPES[n]) for n in SPEC_COLS), ("ready", _BOOL)],
    "attempts": [("job_id", _S), ("number", _I), ("worker_id", _S), ("assigned_at_ms", _I), ("started_at_ms", _I),
                 ("ended_at_ms", _I), ("outcome", _S), ("error", _S), ("result", _B), ("stats", _B)],
    "workers": [("worker_id", _S), ("seq", _I), ("capacity", _I), ("tags", _L), ("hardware", _L),
                ("memory_gb", _F), ("cuda_compute", _F), ("cpus", _I), ("status", _S), ("running", _L),
                ("registered_at_ms", _I), ("info", _B), ("plugins", _L), ("devices", _B), ("held", _B)],
    "assignments": [("job_id", _S), ("worker_id", _S), ("attempt", _I), ("position", _I)],
    "keys": [("key", _S), ("job_id", _S), ("spec_hash", _B), ("created_at_ms", _I), ("seq", _I)],
    "revoked_tokens": [("token_id", _S), ("expires_at_ms", _I)],
}
assert [n for n, _ in SCHEMAS["attempts"][1:]] == list(Attempt.FIELDS)
assert [n for n, _ in SCHEMAS["workers"]] == list(Worker.FIELDS)
assert [n for n, _ in SCHEMAS["keys"]] == list(KeyRecord.FIELDS)

ARROW_SCHEMAS: Final = {t: pa.schema(cols) for t, cols in SCHEMAS.items()}
DDL: Final = "CREATE TABLE meta (k VARCHAR PRIMARY KEY, v BLOB);\n" + "".join(
    f"CREATE TABLE {t} ({', '.join(f'{n} {_SQL[ty]}' for n, ty in cols)});\n" for t, cols in SCHEMAS.items())


CHUNK_ROWS: Final = 8_192


def stream(name: str, chunks: Iterable[Sequence[Sequence[Any]]]) -> pa.RecordBatchReader:
    """The rows of table `name` as a stream of Arrow batches, one per column chunk (each chunk one
    list of columns in the schema's order), built only as the reader pulls them.

    Two reasons. Memory: a whole million-job table in Arrow is ~300 MB beside the state, a batch is
    ~2 MB. The GIL: `pa.array` holds it for its whole input (1-2 s for a million strings or payloads
    on a loaded 2-core box), and the dump runs beside pysyncobj's tick thread, which must not stall
    past an election timeout; CHUNK_ROWS rows at a time it holds it for a few milliseconds."""
    schema = ARROW_SCHEMAS[name]
    types = schema.types
    return pa.RecordBatchReader.from_batches(schema, (
        pa.record_batch([pa.array(col, type=ty) for col, ty in zip(cols, types)], schema=schema) for cols in chunks))


def rows(records: Sequence[Sequence[Any]], seen: Callable[[Sequence[Any]], None] | None = None,
         ) -> Iterator[list[list[Any]]]:
    """Column chunks of rows (records are tuples): one C-level `map(itemgetter(k))` per column.
    `seen` is called with each chunk of records as it is converted."""
    if not records:
        return
    getters = [itemgetter(k) for k in range(len(records[0]))]
    for i in range(0, len(records), CHUNK_ROWS):
        chunk = records[i:i + CHUNK_ROWS]
        if seen is not None:
            seen(chunk)
        yield [list(map(get, chunk)) for get in getters]


_OWN_GETTERS: Final = [itemgetter(k) for k in range(len(JOB_OWN))]
_SPEC_GETTERS: Final = [itemgetter(k) for k in range(len(SPEC_COLS))]
_GET_SPEC: Final = itemgetter(len(Job.FIELDS) - 1)


def jobs(records: list[Job], ready: list[bool], seen: Callable[[Sequence[Job]], None] | None = None,
         ) -> Iterator[list[list[Any]]]:
    """Column chunks of the jobs table: the job's own fields, its spec's fields, `ready`."""
    for i in range(0, len(records), CHUNK_ROWS):
        chunk = records[i:i + CHUNK_ROWS]
        if seen is not None:
            seen(chunk)
        specs = list(map(_GET_SPEC, chunk))
        yield [*(list(map(get, chunk)) for get in _OWN_GETTERS), *(list(map(get, specs)) for get in _SPEC_GETTERS),
               ready[i:i + CHUNK_ROWS]]


def attempt_rows(records: list[Job]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(records), CHUNK_ROWS):
        out.extend((j.job_id, *a) for j in records[i:i + CHUNK_ROWS] if j.attempts for a in j.attempts)
    return out


# ---- back to records ------------------------------------------------------------------------

_STATUS: Final = {s.value: s for s in JobStatus}
_WORKER_STATUS: Final = {s.value: s for s in WorkerStatus}
_EMPTY: Final[tuple[str, ...]] = ()
_new: Final = tuple.__new__


def pylist(col: pa.ChunkedArray) -> list[Any] | repeat[Any]:
    """A column as Python values. An all-null column costs nothing; a constant one (a batch of
    jobs of one type, timeout, retry policy...) converts one value and shares it, which is both
    faster and smaller than a million equal objects."""
    n = len(col)
    if col.null_count == n:
        return repeat(None)
    if n > 1 and not col.null_count and _constant(col):
        return [col[0].as_py()] * n
    return col.to_pylist()  # type: ignore[no-any-return]


def _constant(col: pa.ChunkedArray) -> bool:
    if pa.types.is_floating(col.type):  # -0.0 == 0.0, but they pack (and hash) differently: compare bits
        col = pa.chunked_array([chunk.view(pa.int64()) for chunk in col.chunks], pa.int64())
    first = col[0]
    if first != col[len(col) - 1]:  # most varying columns differ at their ends: no scan
        return False
    return bool(pc.all(pc.equal(col, first)).as_py())


def tuples(col: pa.ChunkedArray) -> list[tuple[str, ...]] | repeat[tuple[str, ...]]:
    """A VARCHAR[] column as tuples. Most lists are empty: they share one empty tuple and only the
    others are converted; equal lists share one tuple (a tag set repeats across a batch)."""
    lengths = pc.fill_null(pc.list_value_length(col), 0)
    if not pc.any(pc.not_equal(lengths, 0)).as_py():
        return repeat(_EMPTY)
    out: list[tuple[str, ...]] = [_EMPTY] * len(col)
    rows = pc.indices_nonzero(lengths)
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    for i, v in zip(rows.to_pylist(), col.take(rows).to_pylist()):
        t = tuple(v)
        out[i] = shared.setdefault(t, t)
    return out


def jobs_from(tbl: pa.Table, attempts: dict[str, tuple[Attempt, ...]]) -> list[Job]:
    """Jobs, in the table's order.

    Records are tuples: `tuple.__new__` mapped over zipped columns builds them without a Python
    frame per record."""
    if not tbl.num_rows:
        return []
    present = set(tbl.column_names)  # a schema-3 or -4 file lacks the spec fields added since: their defaults
    spec_cols = [repeat(JobSpec.DEFAULTS[n]) if n not in present else tuples(tbl[n]) if _SPEC_TYPES[n] == _L
                 else pylist(tbl[n]) for n in SPEC_COLS]
    specs = list(map(_new, repeat(JobSpec), zip(*spec_cols)))
    own = {n: pylist(tbl[n]) for n in JOB_OWN}
    own["status"] = list(map(_STATUS.__getitem__, pylist(tbl["status"])))
    ids: list[str] = own["job_id"]  # type: ignore[assignment]
    atts = map(attempts.get, ids, repeat(())) if attempts else repeat(())
    return list(map(_new, repeat(Job), zip(*(own[n] for n in JOB_OWN), atts, specs)))


def attempts_from(tbl: pa.Table) -> dict[str, tuple[Attempt, ...]]:
    """Attempts grouped by job, in attempt order (the table is read ordered by job, number)."""
    out: dict[str, list[Attempt]] = {}
    cols = [pylist(tbl[n]) for n in Attempt.FIELDS]
    for job_id, attempt in zip(tbl["job_id"].to_pylist(), map(_new, repeat(Attempt), zip(*cols))):
        out.setdefault(job_id, []).append(attempt)
    return {k: tuple(v) for k, v in out.items()}


#: workers columns added after schema 3, with the value an older snapshot's workers get
_WORKER_COLUMN_DEFAULTS: Final[dict[str, Any]] = {"plugins": _EMPTY, "devices": _EMPTY, "held": _EMPTY}


def pack_worker_extras(w: Worker) -> tuple[Any, ...]:
    """A worker as its table row: devices and held devices as msgpack blobs."""
    return (*w[:-2], _pack_devices(w.devices), msgpack.packb([[j, list(d)] for j, d in w.held], use_bin_type=True))


def _pack_devices(devices: tuple[Device, ...]) -> bytes:
    return msgpack.packb([[d.kind, d.index, d.model, d.memory_gb, d.compute] for d in devices], use_bin_type=True)


def _devices(blob: bytes) -> tuple[Device, ...]:
    return tuple(Device(kind=k, index=i, model=m, memory_gb=float(g), compute=float(c))
                 for k, i, m, g, c in msgpack.unpackb(blob, raw=False))


def _held(blob: bytes) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((j, tuple(d)) for j, d in msgpack.unpackb(blob, raw=False))


def workers_from(tbl: pa.Table) -> list[Worker]:
    cols: list[Any] = []
    for name, ty in SCHEMAS["workers"]:
        if name not in tbl.column_names:
            cols.append([_WORKER_COLUMN_DEFAULTS[name]] * tbl.num_rows)
        elif name in ("devices", "held"):
            cols.append(list(map(_devices if name == "devices" else _held, tbl[name].to_pylist())))
        elif name == "status":
            cols.append([_WORKER_STATUS[s] for s in tbl[name].to_pylist()])
        else:
            cols.append([tuple(v) for v in tbl[name].to_pylist()] if ty == _L else tbl[name].to_pylist())
    return list(map(Worker._make, *cols))


def keys_from(tbl: pa.Table) -> list[KeyRecord]:
    return list(map(_new, repeat(KeyRecord), zip(*(tbl[n].to_pylist() for n in KeyRecord.FIELDS))))
