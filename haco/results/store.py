"""The results store: one row per ended attempt in `results.duckdb`, and sandboxed SQL over it.

Every call blocks: run it through `asyncio.to_thread`, never on the event loop or the Raft tick
thread. Rows are keyed by (job_id, attempt), inserted with insert-or-ignore together with an
applied-index watermark in one transaction, so replays, snapshot installs and rebuilds neither
lose nor double rows. The file is derived data: `rebuild_from` refills it from a snapshot's jobs.
One column is not write-once: `job_status`, the job's status as last recorded, is rewritten on
every row of the job whenever the job's rows are recorded again (each time one of its attempts
ends or it becomes final), so every attempt's row ends up carrying the job's final status.

Sandbox: duckdb 2.0 refuses a second database instance on a file this process has open (both
read-only connect and ATTACH ... READ_ONLY), and settings are per database, so a cursor of the
writer is no sandbox. A query runs in a fresh in-memory database that holds only an Arrow copy of
`results` (exported with its watermark in one transaction, cached until the next write), locked
down before any user SQL: no file or network access, no extensions, no Python replacement scans,
one thread, a memory limit, no spilling, configuration locked. Only one SELECT is accepted, a
timer interrupts it at its deadline, and a result of more than `row_limit` rows is refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import duckdb
import msgpack
import pyarrow as pa

from raft_state.records import Job

from haco.results.sandbox import (ROW_LIMIT_DEFAULT, ROW_LIMIT_MAX, QueryBusy, QueryError, QueryRefused,
                                  QueryTimeout, QueryTooLarge, ResultTooLarge, Sandbox, _jsonable)

__all__ = ["ROW_LIMIT_DEFAULT", "ROW_LIMIT_MAX", "QueryBusy", "QueryError", "QueryRefused", "QueryResult",
           "QueryTimeout", "QueryTooLarge", "ResultRow", "ResultTooLarge", "ResultsStore", "rows_for_job"]

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
    """A query's answer as the sandbox wrote it: the API sends `body` unparsed."""

    body: bytes  #: JSON {"columns": [...], "rows": [[...], ...]}; values JSON-able
    applied_index: int  #: the watermark of the results the query saw

    @property
    def columns(self) -> list[str]:
        return json.loads(self.body)["columns"]  # type: ignore[no-any-return]

    @property
    def rows(self) -> list[list[Any]]:
        return json.loads(self.body)["rows"]  # type: ignore[no-any-return]


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
        self._cache: tuple[int, Path, int] | None = None  #: (generation, Arrow file, watermark)
        self._cache_lock = threading.Lock()
        self._sandbox = Sandbox(slots=2)

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
        """Close the writer connection and stop the SQL sandbox; the store is unusable afterwards."""
        self._sandbox.close()
        with self._write_lock:
            self._con.close()
        with self._cache_lock:
            if self._cache is not None:
                self._cache[1].unlink(missing_ok=True)
                self._cache = None

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
        """Insert-or-ignore `chunk`, then bring the job_status of its rows up to date; returns how
        many rows were new. Within a chunk the first row of a (job, attempt) is inserted and the
        last one's job_status kept (rows of one job are recorded in apply order)."""
        table = pa.table([pa.array([getattr(r, f.name) for r in chunk], type=f.type) for f in _SCHEMA],
                         schema=_SCHEMA)
        latest = {(r.job_id, r.attempt): r.job_status for r in chunk}
        statuses = pa.table({"job_id": [k[0] for k in latest], "attempt": pa.array([k[1] for k in latest], pa.int64()),
                             "job_status": list(latest.values())})
        self._con.register("_batch", table)
        self._con.register("_statuses", statuses)
        try:
            names = ", ".join(_SCHEMA.names)
            done = self._con.execute(f"INSERT INTO results ({names}) SELECT {names} FROM _batch "
                                     "ON CONFLICT DO NOTHING").fetchall()
            self._con.execute("UPDATE results SET job_status = s.job_status FROM _statuses s "
                              "WHERE results.job_id = s.job_id AND results.attempt = s.attempt "
                              "AND results.job_status IS DISTINCT FROM s.job_status")
        finally:
            self._con.unregister("_batch")
            self._con.unregister("_statuses")
        return int(done[0][0])

    def rebuild_from(self, jobs: Iterable[Job], applied_index: int) -> int:
        """Record every ended attempt of `jobs` (a snapshot's, or after a snapshot install).

        Insert-or-ignore like `record`: rows already present (also of jobs pruned since) are kept.
        """
        return self.record((row for job in jobs for row in rows_for_job(job, applied_index)), applied_index)

    def _snapshot(self) -> tuple[Path, int]:
        """The results table and its watermark as one consistent Arrow IPC file, written once per write
        generation beside the store (the sandbox maps it); the file before it is removed."""
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
            path = self.path.with_name(f".{self.path.name}.query-{os.getpid()}-{generation}.arrow")
            tmp = path.with_suffix(".tmp")
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, path)
            if self._cache is not None and self._cache[1] != path:
                self._cache[1].unlink(missing_ok=True)  # a child still mapping it keeps its pages
            self._cache = (generation, path, index)
            return path, index

    def query(self, sql: str, *, timeout_s: float = 5.0, row_limit: int = ROW_LIMIT_DEFAULT,
              memory_limit: str = "256MB") -> QueryResult:
        """Run one read-only SELECT over `results` in the sandbox (see haco.results.sandbox).

        Raises QueryRefused (not a single SELECT, or forbidden access), QueryTimeout (past
        `timeout_s`), QueryTooLarge (past `memory_limit` or the sandbox's address space),
        ResultTooLarge (more than `row_limit` rows, or more bytes than the API answers with), QueryBusy (too many queries at
        once), QueryError (anything else: bad SQL, a value the API cannot return). All are 4xx:
        the replica keeps serving, and its memory does not grow with the query.
        """
        for attempt in range(2):
            path, index = self._snapshot()
            try:
                body = self._sandbox.run(str(path), sql, timeout_s=timeout_s, row_limit=row_limit,
                                         memory_limit=memory_limit)
            except QueryBusy as exc:
                if attempt or "changed" not in exc.message:  # the file was replaced under the child: once more
                    raise
                continue
            return QueryResult(body=body, applied_index=index)
        raise AssertionError("unreachable")


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:  # the failed statement may have ended the transaction already
        log.debug("rollback after a failed write found no transaction", exc_info=True)
