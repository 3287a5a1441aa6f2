"""Results SQL in a child process whose memory the kernel bounds.

DuckDB's `memory_limit` covers its buffer manager, not every allocation: `SELECT list(range(10000000))`
or a huge `repeat()` takes a process past 1 GB, and a single huge vector does not notice an
interrupt until it is built. So user SQL never runs in the replica: it runs in a child
(`python -m <this module>`) that sets RLIMIT_AS to its idle size plus `ADDRESS_SPACE_EXTRA` once it
is warm, so an allocation past it fails inside DuckDB (OutOfMemoryException) or Python
(MemoryError) and the query is refused with SQL_MEMORY_LIMIT; a child that dies or overruns its
deadline is killed and replaced. The replica's memory does not grow with a query.

Each query sees an Arrow IPC file of `results` (written by the store once per write generation,
memory-mapped here) in a fresh in-memory database locked down before any user SQL: no file or
network access, no extensions, no Python replacement scans, one thread, a memory limit, no
spilling, configuration locked. Only one SELECT runs; a timer interrupts it at its deadline; at
most `row_limit` rows, `ARROW_BYTES_MAX` bytes of Arrow and `RESULT_BYTES_MAX` bytes of JSON come back.
A result with more rows is refused (SQL_RESULT_LIMIT) once its `row_limit + 1`-th row is read, so
a cross join stops early, and an answer is never a silent prefix: the SQL's own LIMIT/OFFSET pages.

Protocol on the child's stdin/stdout: frames of a 4-byte big-endian length and a JSON object.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import json
import logging
import math
import os
import resource
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, BinaryIO, ClassVar, Final

from haco.errors import HacoError

log = logging.getLogger(__name__)

ADDRESS_SPACE_EXTRA: Final = 512 << 20  #: a child may map this much beyond its warm idle size
ROW_LIMIT_DEFAULT: Final = 10_000  #: rows answered when the request names no limit
ROW_LIMIT_MAX: Final = 100_000  #: the largest row limit a request may ask for
ARROW_BYTES_MAX: Final = 64 << 20  #: Arrow fetched from DuckDB before conversion to Python
RESULT_BYTES_MAX: Final = 32 << 20  #: JSON of the rows answered
GRACE_S: Final = 2.0  #: past the query's own deadline before the child is killed
START_TIMEOUT_S: Final = 30.0
RECYCLE_AFTER: Final = 500  #: queries per child (address space fragments over time)
_FRAME: Final = struct.Struct(">I")
_FRAME_MAX: Final = RESULT_BYTES_MAX + (1 << 20)


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
    """Past the sandbox's memory (DuckDB's memory_limit or the child's address-space bound)."""

    code = "SQL_MEMORY_LIMIT"


class ResultTooLarge(QueryError):
    """More rows than the request's row limit, or more bytes than the API answers with."""

    code = "SQL_RESULT_LIMIT"


class QueryBusy(QueryError):
    code, status = "SQL_BUSY", 429


ERRORS: Final[dict[str, type[QueryError]]] = {
    cls.code: cls for cls in (QueryError, QueryRefused, QueryTimeout, QueryTooLarge, ResultTooLarge, QueryBusy)}


# --- the parent side ---------------------------------------------------------------------------


class _Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     close_fds=True)
        self.queries = 0
        self.timed_out = False
        ready = _read_frame(self.proc.stdout, time.monotonic() + START_TIMEOUT_S)  # type: ignore[arg-type]
        if ready != b'{"ready":true}':
            self.kill()
            raise QueryBusy("the SQL sandbox did not start; retry later")

    def ask(self, request: dict[str, Any], deadline: float) -> tuple[dict[str, Any], bytes] | None:
        """The child's answer (a JSON head, and the rows' JSON when it ran), or None when it died
        or missed `deadline` (then it is killed)."""
        self.queries += 1
        try:
            _write_frame(self.proc.stdin, json.dumps(request).encode())  # type: ignore[arg-type]
            head = _read_frame(self.proc.stdout, deadline)  # type: ignore[arg-type]
            answer = None if head is None else json.loads(head)
            body = _read_frame(self.proc.stdout, deadline) if answer and answer.get("ok") else b""  # type: ignore[arg-type]
        except (OSError, ValueError):
            answer = body = None
        if answer is None or body is None:
            self.timed_out = time.monotonic() >= deadline
            self.kill()
            return None
        return answer, body

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # stdin's buffer may hold a request it never read
                    pipe.close()


class Sandbox:
    """Up to `slots` children, started on first use and kept; thread-safe, every call blocks."""

    def __init__(self, slots: int = 2) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._idle: list[_Child] = []
        self._lock = threading.Lock()
        self.closed = False

    def run(self, arrow_path: str, sql: str, *, timeout_s: float, row_limit: int, memory_limit: str) -> bytes:
        """The answer's JSON object `{"columns", "rows"}` as bytes; raises a QueryError."""
        if not self._slots.acquire(timeout=timeout_s):
            raise QueryBusy("too many results queries at once; retry later")
        try:
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is not None and child.proc.poll() is not None:  # died while idle (killed from outside)
                child.kill()
                child = None
            if child is None:
                child = _Child()
            request = {"arrow": arrow_path, "sql": sql, "timeout_s": timeout_s, "row_limit": row_limit,
                       "memory_limit": memory_limit}
            got = child.ask(request, time.monotonic() + timeout_s + GRACE_S)
            if got is None:
                raise _lost(child, timeout_s)
            answer, body = got
            if answer.get("recycle") or child.queries >= RECYCLE_AFTER:
                child.kill()
            else:
                with self._lock:
                    if self.closed:
                        child.kill()
                    else:
                        self._idle.append(child)
            if "error" in answer:
                err = answer["error"]
                raise ERRORS.get(err["code"], QueryError)(err["message"], err.get("detail"))
            return body
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for child in idle:
            child.kill()


def _lost(child: _Child, timeout_s: float) -> QueryError:
    if child.timed_out:
        return QueryTimeout(f"query stopped after {timeout_s:g} s (the time limit)", {"limit_s": timeout_s})
    return QueryTooLarge(f"the query needed more memory than the SQL sandbox allows "
                         f"({ADDRESS_SPACE_EXTRA >> 20} MiB)", {"limit_bytes": ADDRESS_SPACE_EXTRA})


def _write_frame(pipe: BinaryIO, data: bytes) -> None:
    pipe.write(_FRAME.pack(len(data)))
    pipe.write(data)
    pipe.flush()


def _read_frame(pipe: BinaryIO, deadline: float | None) -> bytes | None:
    """One frame, or None on EOF, a frame over the bound or the deadline."""
    fd = pipe.fileno()
    buf = bytearray()
    need = _FRAME.size
    header = True
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            while len(buf) < need:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0 or not sel.select(left):
                        return None
                chunk = os.read(fd, min(need - len(buf), 1 << 20))
                if not chunk:
                    return None
                buf += chunk
            if not header:
                return bytes(buf[_FRAME.size:])
            (size,) = _FRAME.unpack(buf[:_FRAME.size])
            if size > _FRAME_MAX:
                return None
            need, header = _FRAME.size + size, False


# --- the child side ----------------------------------------------------------------------------


def lockdown(table: Any, memory_limit: str) -> Any:
    """A fresh in-memory database holding only `table` as `results`, locked down before any user SQL."""
    import duckdb
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


def run_query(con: Any, sql: str, timeout_s: float, row_limit: int) -> bytes:
    """Run one SELECT on a locked-down connection; the answer's JSON. Raises QueryError."""
    import duckdb
    import pyarrow as pa
    if not _encodes(sql):
        raise QueryError("sql is not valid UTF-8 (a lone surrogate)", {"field": "sql"})
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
        reader, batches, n, size = rel.to_arrow_reader(min(row_limit + 1, 10_000)), list[pa.RecordBatch](), 0, 0
        while (batch := next(reader, None)) is not None:
            batches.append(batch)
            n += batch.num_rows
            size += batch.nbytes
            if n > row_limit:
                raise _too_many_rows(row_limit)
            if size > ARROW_BYTES_MAX:
                raise ResultTooLarge(f"the result is over {ARROW_BYTES_MAX >> 20} MiB (the result limit); "
                                     "select fewer rows or smaller values", {"limit_bytes": ARROW_BYTES_MAX})
    except duckdb.PermissionException as exc:
        raise QueryRefused(str(exc)) from None
    except (duckdb.OutOfMemoryException, MemoryError) as exc:
        raise _too_large(con, exc) from None
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        if fired.is_set():
            raise QueryTimeout(f"query interrupted after {timeout_s:g} s (the time limit)",
                               {"limit_s": timeout_s}) from None
        if "out of memory" in str(exc).lower() or "failed to allocate" in str(exc).lower():
            raise _too_large(con, exc) from None
        raise QueryError(str(exc)) from None
    finally:
        done.set()
        timer.join()
    table = pa.Table.from_batches(batches, reader.schema)
    try:
        values = [_column(con, name, col) for name, col in zip(columns, table.columns)]
        rows = [list(r) for r in zip(*values)] if values else []
        del values, table, batches
        out = json.dumps({"columns": columns, "rows": rows},
                         ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8", "replace")
    except MemoryError:
        raise QueryTooLarge("the result needs more memory than the SQL sandbox allows",
                            {"limit_bytes": ADDRESS_SPACE_EXTRA}) from None
    if len(out) > RESULT_BYTES_MAX:
        raise ResultTooLarge(f"the result is over {RESULT_BYTES_MAX >> 20} MiB of JSON (the result limit); "
                             "select fewer rows or columns", {"limit_bytes": RESULT_BYTES_MAX})
    return out


def _too_many_rows(row_limit: int) -> ResultTooLarge:
    """Past the request's row limit; the message says how to get the rows anyway."""
    if row_limit < ROW_LIMIT_MAX:
        how = f"page with LIMIT and OFFSET in the SQL, or raise limit (at most {ROW_LIMIT_MAX:,})"
    else:
        how = "page with LIMIT and OFFSET in the SQL (this is the largest limit)"
    return ResultTooLarge(f"the query returns more than {row_limit:,} rows (the row limit); {how}",
                          {"limit_rows": row_limit, "max_limit_rows": ROW_LIMIT_MAX})


def _too_large(con: Any, exc: BaseException) -> QueryTooLarge:
    try:
        limit = str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
    except Exception:  # the connection may be unusable after an allocation failure
        limit = "?"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return QueryTooLarge(f"the query needs more memory than the SQL sandbox allows (memory_limit {limit}, "
                         f"{ADDRESS_SPACE_EXTRA >> 20} MiB of address space): {first}",
                         {"memory_limit": limit, "address_space_bytes": ADDRESS_SPACE_EXTRA})


def _column(con: Any, name: str, col: Any) -> list[Any]:
    """A column as JSON values. A value Python cannot hold (DuckDB's infinite or far-future dates and
    timestamps) makes the column rendered as DuckDB's text; if even that fails, a 400 naming it."""
    try:
        return [_jsonable(v) for v in col.to_pylist()]
    except (OverflowError, ValueError, ArithmeticError):
        pass
    import pyarrow as pa
    try:
        con.register("_haco_column", pa.table({"v": col}))
        return [r[0] for r in con.execute("SELECT CAST(v AS VARCHAR) FROM _haco_column").fetchall()]
    except Exception:  # any failure of the fallback is the same answer
        raise QueryError(f"column {name!r} holds a value outside what the API can return; CAST it to VARCHAR",
                         {"column": name}) from None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _jsonable(value: Any) -> Any:
    """A DuckDB value as JSON: times ISO 8601, decimals float, bytes base64, non-finite floats str."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return value if _encodes(value) else value.encode("utf-8", "replace").decode()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):  # HUGEINT (sum of integers) comes as an integral Decimal
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    import pyarrow as pa
    if isinstance(value, pa.MonthDayNano):
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def child_main() -> int:
    """Serve queries on stdin/stdout until stdin closes (the replica went away)."""
    import duckdb
    import pyarrow as pa
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the replica stops it
    warm = lockdown(pa.table({"a": [1]}), "64MB")  # the first database maps DuckDB's arenas: count them as idle
    warm.execute("SELECT 1").fetchall()
    warm.close()
    base = _vm_size()
    limit = base + ADDRESS_SPACE_EXTRA
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _write_frame(stdout, b'{"ready":true}')
    mapped: tuple[str, Any] | None = None
    while (frame := _read_frame(stdin, None)) is not None:
        request = json.loads(frame)
        answer: dict[str, Any]
        out = b""
        try:
            if mapped is None or mapped[0] != request["arrow"]:
                mapped = None
                with pa.memory_map(request["arrow"]) as source:
                    mapped = (request["arrow"], pa.ipc.open_file(source).read_all())
            con = lockdown(mapped[1], request["memory_limit"])
            try:
                out = run_query(con, request["sql"], float(request["timeout_s"]), int(request["row_limit"]))
            finally:
                con.close()
            answer = {"ok": True}
        except QueryError as exc:
            answer = {"error": {"code": exc.code, "message": exc.message, "detail": exc.detail}}
        except (MemoryError, duckdb.OutOfMemoryException):
            answer = {"error": {"code": QueryTooLarge.code, "message": "the query needs more memory than the SQL "
                                f"sandbox allows ({ADDRESS_SPACE_EXTRA >> 20} MiB)", "detail": {}}}
        except FileNotFoundError:
            answer = {"error": {"code": QueryBusy.code, "message": "the results changed meanwhile; retry",
                                "detail": {}}}
        answer["recycle"] = _vm_size() > base + ADDRESS_SPACE_EXTRA // 2
        _write_frame(stdout, json.dumps(answer).encode())
        if out:
            _write_frame(stdout, out)
        del out
        if answer["recycle"]:
            break
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
