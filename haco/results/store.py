"""The results store: one row per ended attempt in `results.duckdb`, and sandboxed SQL over it.

Every call blocks: run it through `asyncio.to_thread`, never on the event loop or the Raft tick
thread. Rows are keyed by (job_id, attempt), inserted with insert-or-ignore together with an
applied-index watermark in one transaction, so replays, snapshot installs and rebuilds neither
lose nor double rows. The file is derived data: `rebuild_from` refills it from a snapshot's jobs.

Sandbox: duckdb 2.0 refuses a second database instance on a file this process has open (both
read-only connect and ATTACH ... READ_ONLY), and settings are per database, so a cursor of the
writer is no sandbox. A query runs in a fresh in-memory database that holds only an Arrow copy of
`results` (exported with its watermark in one transaction, cached until the next write), locked
down before any user SQL: no file or network access, no extensions, no Python replacement scans,
one thread, a memory limit, no spilling, configuration locked. Only one SELECT is accepted, a
timer interrupts it at its deadline, and at most `row_limit` rows come back.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import logging
import math
import os
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Final

import duckdb
import msgpack
import pyarrow as pa

from raft_state.records import Job

from haco.errors import HacoError

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
_BATCH_ROWS: Final = 50_000

_DDL: Final = """
CREATE TABLE IF NOT EXISTS results (
  job_id VARCHAR NOT NULL, attempt BIGINT NOT NULL, worker_id VARCHAR, type VARCHAR, outcome VARCHAR,
  job_status VARCHAR, priority BIGINT, assigned_at TIMESTAMP, started_at TIMESTAMP, ended_at TIMESTAMP,
  wall_ms BIGINT, cpu_ms BIGINT, peak_rss_bytes BIGINT, error VARCHAR, result JSON, labels JSON,
  applied_index BIGINT NOT NULL, PRIMARY KEY (job_id, attempt));
CREATE TABLE IF NOT EXISTS results_meta (key VARCHAR PRIMARY KEY, value BIGINT NOT NULL);
"""
_MS: Final = pa.timestamp("ms")
_SCHEMA: Final = pa.schema([
    ("job_id", pa.string()), ("attempt", pa.int64()), ("worker_id", pa.string()), ("type", pa.string()),
    ("outcome", pa.string()), ("job_status", pa.string()), ("priority", pa.int64()), ("assigned_at", _MS),
    ("started_at", _MS), ("ended_at", _MS), ("wall_ms", pa.int64()), ("cpu_ms", pa.int64()),
    ("peak_rss_bytes", pa.int64()), ("error", pa.string()), ("result", pa.string()), ("labels", pa.string()),
    ("applied_index", pa.int64()),
])


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultRow:
    """One ended attempt as stored; times are ms since the epoch (stored as UTC TIMESTAMP)."""

    job_id: str
    attempt: int
    worker_id: str
    type: str
    outcome: str
    job_status: str
    priority: int
    assigned_at: int
    started_at: int | None
    ended_at: int
    wall_ms: int | None
    cpu_ms: int | None
    peak_rss_bytes: int | None
    error: str | None
    result: str | None  #: JSON text
    labels: str | None  #: JSON text
    applied_index: int


assert [f.name for f in fields(ResultRow)] == _SCHEMA.names


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]  #: JSON-able values only
    truncated: bool  #: more than `row_limit` rows existed
    applied_index: int  #: the watermark of the results the query saw


class QueryError(HacoError):
    """A query that did not run to completion; `code` and `status` map it to a 4xx answer."""

    code: ClassVar[str] = "SQL_ERROR"
    status: ClassVar[int] = 400


class QueryRefused(QueryError):
    """Not a single read-only SELECT, or it reached for something the sandbox forbids."""

    code = "SQL_REFUSED"


class QueryTimeout(QueryError):
    code, status = "SQL_TIMEOUT", 408


class QueryTooLarge(QueryError):
    code = "SQL_MEMORY_LIMIT"


class QueryBusy(QueryError):
    code, status = "SQL_BUSY", 429


_BAD_MSGPACK: Final = (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError)


def _json_text(packed: bytes | None) -> str | None:
    """Canonical msgpack -> JSON text; undecodable input (or NaN) becomes None, never raises."""
    try:
        return None if packed is None else json.dumps(
            msgpack.unpackb(packed, raw=False, strict_map_key=False), default=_jsonable,
            separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except _BAD_MSGPACK:
        return None


def _stat(stats: dict[Any, Any], name: str) -> int | None:
    value = stats.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if -(2**63) <= value < 2**63 else None


def rows_for_job(job: Job, applied_index: int) -> list[ResultRow]:
    """Every ended attempt of `job` as a row stamped with `applied_index`. Pure; any thread."""
    rows: list[ResultRow] = []
    for a in job.attempts:
        if a.ended_at_ms is None or a.outcome is None:
            continue
        try:
            stats = msgpack.unpackb(a.stats, raw=False, strict_map_key=False) if a.stats else {}
        except _BAD_MSGPACK:
            stats = {}
        stats = stats if isinstance(stats, dict) else {}
        wall = _stat(stats, "wall_ms")
        if wall is None and a.started_at_ms is not None:
            wall = a.ended_at_ms - a.started_at_ms
        rows.append(ResultRow(
            job_id=job.job_id, attempt=a.number, worker_id=a.worker_id, type=job.spec.type, outcome=str(a.outcome),
            job_status=str(job.status), priority=job.spec.priority, assigned_at=a.assigned_at_ms,
            started_at=a.started_at_ms, ended_at=a.ended_at_ms, wall_ms=wall, cpu_ms=_stat(stats, "cpu_ms"),
            peak_rss_bytes=_stat(stats, "peak_rss_bytes"), error=a.error, result=_json_text(a.result),
            labels=_json_text(job.spec.labels), applied_index=applied_index))
    return rows


class ResultsStore:
    """The results file of one replica. Thread-safe; every method blocks (run it via `to_thread`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, *, created: bool) -> None:
        self._con = con
        self.path = path
        self.created = created  #: the file did not exist: the caller should `rebuild_from` the snapshot
        self._write_lock = threading.Lock()
        self._generation = 0  # bumped by every committed write; keys the cached Arrow export
        self._cache: tuple[int, pa.Table, int] | None = None
        self._cache_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(2)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> ResultsStore:
        """Open or create the file. Raises duckdb.Error if it is unreadable or held by another process."""
        path = Path(path)
        created = not path.exists()
        con = duckdb.connect(str(path), config={"threads": 2})
        try:
            con.execute(_DDL)
            con.execute("INSERT INTO results_meta VALUES ('schema_version', ?), ('applied_index', 0) "
                        "ON CONFLICT DO NOTHING", [SCHEMA_VERSION])
        except BaseException:
            con.close()
            raise
        log.info("results store open path=%s created=%s", path, created)
        return cls(con, path, created=created)

    def close(self) -> None:
        """Close the writer connection; the store is unusable afterwards."""
        with self._write_lock:
            self._con.close()

    def watermark(self) -> int:
        """The applied index up to which every ended attempt is recorded."""
        with self._write_lock:
            return self._watermark(self._con)

    @staticmethod
    def _watermark(con: duckdb.DuckDBPyConnection) -> int:
        rows = con.execute("SELECT value FROM results_meta WHERE key = 'applied_index'").fetchall()
        return int(rows[0][0]) if rows else 0

    def record(self, rows: Iterable[ResultRow], applied_index: int) -> int:
        """Insert-or-ignore `rows` and raise the watermark to `applied_index`, in one transaction.

        Returns how many rows were new. The watermark never moves back. Raises duckdb.Error on I/O
        failure, in which case nothing was written.
        """
        batch = list(rows)
        with self._write_lock:
            self._con.execute("BEGIN")
            try:
                inserted = sum(self._insert(batch[i:i + _BATCH_ROWS]) for i in range(0, len(batch), _BATCH_ROWS))
                self._con.execute(
                    "INSERT INTO results_meta VALUES ('applied_index', ?) ON CONFLICT (key) "
                    "DO UPDATE SET value = greatest(results_meta.value, excluded.value)", [applied_index])
                self._con.execute("COMMIT")
            except BaseException:
                _rollback(self._con)
                raise
            self._generation += 1
        return inserted

    def _insert(self, chunk: list[ResultRow]) -> int:
        table = pa.table([pa.array([getattr(r, f.name) for r in chunk], type=f.type) for f in _SCHEMA],
                         schema=_SCHEMA)
        self._con.register("_batch", table)
        try:
            names = ", ".join(_SCHEMA.names)
            done = self._con.execute(f"INSERT INTO results ({names}) SELECT {names} FROM _batch "
                                     "ON CONFLICT DO NOTHING").fetchall()
        finally:
            self._con.unregister("_batch")
        return int(done[0][0])

    def rebuild_from(self, jobs: Iterable[Job], applied_index: int) -> int:
        """Record every ended attempt of `jobs` (a snapshot's, or after a snapshot install).

        Insert-or-ignore like `record`: rows already present (also of jobs pruned since) are kept.
        """
        return self.record((row for job in jobs for row in rows_for_job(job, applied_index)), applied_index)

    def _snapshot(self) -> tuple[pa.Table, int]:
        """The results table and its watermark as one consistent Arrow copy, cached per write."""
        with self._cache_lock:
            generation = self._generation
            if self._cache is not None and self._cache[0] == generation:
                return self._cache[1], self._cache[2]
            with self._write_lock:
                cur = self._con.cursor()  # its own connection: MVCC keeps it consistent while writes go on
            try:
                cur.execute("BEGIN")
                index = self._watermark(cur)
                table = cur.sql("SELECT * FROM results").to_arrow_table()
                cur.execute("COMMIT")
            finally:
                cur.close()
            self._cache = (generation, table, index)
            return table, index

    def query(self, sql: str, *, timeout_s: float = 5.0, row_limit: int = 10_000,
              memory_limit: str = "256MB") -> QueryResult:
        """Run one read-only SELECT over `results` in the sandbox.

        Raises QueryRefused (not a single SELECT, or forbidden access), QueryTimeout (interrupted
        after `timeout_s`), QueryTooLarge (past `memory_limit`), QueryBusy (too many queries at
        once), QueryError (anything else: bad SQL). All are 4xx: the replica keeps serving.
        """
        if not self._slots.acquire(timeout=timeout_s):
            raise QueryBusy("too many results queries at once; retry later")
        try:
            table, index = self._snapshot()
            con = _sandbox(table, memory_limit)
            try:
                return _run(con, sql, timeout_s, row_limit, index)
            finally:
                con.close()
        finally:
            self._slots.release()


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:  # the failed statement may have ended the transaction already
        log.debug("rollback after a failed write found no transaction", exc_info=True)


def _sandbox(table: pa.Table, memory_limit: str) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory database holding only `table` as `results`, locked down before any user SQL."""
    con = duckdb.connect(":memory:", config={
        "threads": 1, "memory_limit": memory_limit, "temp_directory": "", "autoload_known_extensions": False,
        "autoinstall_known_extensions": False, "allow_unsigned_extensions": False,
        "allow_community_extensions": False, "python_enable_replacements": False})
    try:
        con.register("results", table)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _run(con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float, row_limit: int, index: int) -> QueryResult:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None
    if len(statements) != 1:
        raise QueryRefused(f"expected exactly one statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryRefused(f"only SELECT is allowed, not {statements[0].type.name}")
    fired, done = threading.Event(), threading.Event()

    def interrupt() -> None:  # repeats: an interrupt that lands before execution starts is lost
        if done.wait(timeout_s):
            return
        fired.set()
        while not done.is_set():
            con.interrupt()
            done.wait(0.05)

    timer = threading.Thread(target=interrupt, name="results-query-timeout", daemon=True)
    timer.start()
    try:
        rel = con.sql(sql)  # Arrow, not Python objects: TIMESTAMPTZ would need pytz
        columns = list(rel.columns)
        reader, batches, n = rel.to_arrow_reader(min(row_limit + 1, 10_000)), list[pa.RecordBatch](), 0
        while n <= row_limit and (batch := next(reader, None)) is not None:
            batches.append(batch)
            n += batch.num_rows
    except duckdb.PermissionException as exc:
        raise QueryRefused(str(exc)) from None
    except duckdb.OutOfMemoryException as exc:
        raise QueryTooLarge(str(exc)) from None
    except (duckdb.Error, pa.ArrowException) as exc:
        if fired.is_set():
            raise QueryTimeout(f"query interrupted after {timeout_s:g} s") from None
        raise QueryError(str(exc)) from None
    finally:
        done.set()
        timer.join()
    table = pa.Table.from_batches(batches, reader.schema).slice(0, row_limit)
    values = [[_jsonable(v) for v in col.to_pylist()] for col in table.columns]
    rows = [list(r) for r in zip(*values)] if values else []
    return QueryResult(columns=columns, rows=rows, truncated=n > row_limit, applied_index=index)


def _jsonable(value: Any) -> Any:
    """A DuckDB value as JSON: times ISO 8601, decimals float, bytes base64, non-finite floats str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):  # HUGEINT (sum of integers) comes as an integral Decimal
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, pa.MonthDayNano):
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
