"""The results store on a real DuckDB file: insert-or-ignore, watermark, rebuild, and the SQL sandbox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import duckdb
import msgpack
import pyarrow as pa
import pytest

from haco.results.store import (
    QueryError, QueryRefused, QueryTimeout, ResultRow, ResultsStore, ResultTooLarge, rows_for_job,
)
from haco.results.sandbox import lockdown
from raft_state.records import Attempt, Job, JobSpec, JobStatus


def pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def make_job(job_id: str, attempts: list[Attempt], status: JobStatus = JobStatus.COMPLETED) -> Job:
    spec = JobSpec(type="shell", payload=pack({"argv": ["true"]}), priority=5, timeout_ms=60_000, max_retries=3,
                   backoff_ms=1000, required_tags=(), hardware=(), min_memory_gb=0.0, min_cuda_compute=0.0, cpus=1,
                   depends_on=(), deadline_ms=None, labels=pack({"suite": "nightly"}))
    return Job(job_id=job_id, seq=1, key=None, spec=spec, spec_hash=b"h", created_at_ms=0, status=status,
               attempt=len(attempts), failures=0, lost=0, not_before_ms=0, worker_id=None, error=None,
               finished_at_ms=None, finish_seq=None, attempts=tuple(attempts))


def attempt(number: int, *, ended: bool = True, outcome: str = "completed", result: object = None,
            stats: dict[str, object] | None = None) -> Attempt:
    return Attempt(number=number, worker_id="w1", assigned_at_ms=1_000 * number, started_at_ms=1_000 * number + 10,
                   ended_at_ms=1_000 * number + 510 if ended else None, outcome=outcome if ended else None,
                   error=None if outcome == "completed" else "exit 1",
                   result=None if result is None else pack(result), stats=None if stats is None else pack(stats))


def row(job_id: str, n: int = 1, index: int = 1) -> ResultRow:
    return rows_for_job(make_job(job_id, [attempt(n, result={"n": n})]), index)[0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    s = ResultsStore.open(tmp_path / "results.duckdb")
    yield s
    s.close()


def count(store: ResultsStore) -> int:
    return int(store.query("SELECT count(*) FROM results").rows[0][0])


def test_rows_for_job_takes_ended_attempts_with_stats_result_and_labels() -> None:
    job = make_job("j1", [attempt(1, outcome="failed"), attempt(2, result={"ok": True, "blob": b"\x00"},
                                                                 stats={"wall_ms": 480, "cpu_ms": 12.7,
                                                                        "peak_rss_bytes": 1 << 20}),
                          attempt(3, ended=False)])
    rows = rows_for_job(job, 42)
    assert [(r.attempt, r.outcome) for r in rows] == [(1, "failed"), (2, "completed")]
    first, second = rows
    assert first.wall_ms == 500 and first.cpu_ms is None and first.error == "exit 1"
    assert (second.wall_ms, second.cpu_ms, second.peak_rss_bytes) == (480, 12, 1 << 20)
    assert json.loads(second.result or "") == {"ok": True, "blob": "AA=="}
    assert json.loads(second.labels or "") == {"suite": "nightly"}
    assert second.job_status == "completed" and second.applied_index == 42 and second.type == "shell"


def test_rows_for_job_survives_undecodable_stats_and_result() -> None:
    bad = attempt(1).evolve(stats=b"\xc1", result=b"\xc1")
    (r,) = rows_for_job(make_job("j", [bad]), 1)
    assert r.result is None and r.cpu_ms is None and r.wall_ms == 500


def test_new_store_is_created_with_zero_watermark(tmp_path: Path) -> None:
    s = ResultsStore.open(tmp_path / "results.duckdb")
    assert s.created and s.watermark() == 0
    s.close()
    again = ResultsStore.open(tmp_path / "results.duckdb")
    assert not again.created
    again.close()


def test_same_job_and_attempt_recorded_twice_gives_one_row(store: ResultsStore) -> None:
    assert store.record([row("a", index=5), row("b", index=5)], 5) == 2
    assert store.record([row("a", index=6), row("a", 2, index=6)], 6) == 1  # the first recording wins
    assert store.record([row("c", index=7), row("c", index=7)], 7) == 1  # duplicates inside one batch too
    assert count(store) == 4
    out = store.query("SELECT job_id, attempt, applied_index FROM results ORDER BY job_id, attempt")
    assert out.rows == [["a", 1, 5], ["a", 2, 6], ["b", 1, 5], ["c", 1, 7]]


def test_every_attempts_row_ends_with_the_jobs_final_status(store: ResultsStore) -> None:
    first = make_job("j", [attempt(1, outcome="failed")], status=JobStatus.PENDING)  # a retry comes
    store.record(rows_for_job(first, 3), 3)
    final = make_job("j", [attempt(1, outcome="failed"), attempt(2, outcome="failed")], status=JobStatus.FAILED)
    assert store.record(rows_for_job(final, 5), 5) == 1
    out = store.query("SELECT attempt, outcome, job_status, applied_index FROM results ORDER BY attempt")
    assert out.rows == [[1, "failed", "failed", 3], [2, "failed", "failed", 5]]


def test_watermark_advances_with_the_rows_and_never_moves_back(store: ResultsStore) -> None:
    store.record([row("a")], 10)
    assert store.watermark() == 10
    store.record([], 12)
    assert store.watermark() == 12
    store.record([row("b")], 3)  # a replay below the watermark adds missing rows, keeps the watermark
    assert store.watermark() == 12 and count(store) == 2
    assert store.query("SELECT 1").applied_index == 12


def test_failed_write_changes_neither_rows_nor_watermark(store: ResultsStore) -> None:
    store.record([row("a")], 4)
    with pytest.raises(duckdb.Error):  # the rows go in first, then the watermark fails: all rolled back
        store.record([row("b"), row("c")], 2**70)
    assert store.watermark() == 4 and count(store) == 1
    with pytest.raises(OverflowError):
        store.record([replace(row("b"), attempt=2**70)], 9)
    assert store.watermark() == 4 and count(store) == 1
    assert store.record([row("c")], 9) == 1


def test_rows_and_watermark_survive_reopen(tmp_path: Path) -> None:
    s = ResultsStore.open(tmp_path / "results.duckdb")
    s.record([row("a"), row("b")], 8)
    s.close()
    s = ResultsStore.open(tmp_path / "results.duckdb")
    assert s.watermark() == 8 and count(s) == 2
    s.close()


def test_rebuild_from_snapshot_jobs_is_idempotent(store: ResultsStore) -> None:
    jobs = [make_job(f"j{i}", [attempt(1, outcome="failed"), attempt(2, result=i)]) for i in range(3_000)]
    jobs.append(make_job("running", [attempt(1, ended=False)], JobStatus.RUNNING))
    t0 = time.perf_counter()
    assert store.rebuild_from(jobs, 77) == 6_000
    assert time.perf_counter() - t0 < 5.0  # thousands of rows per batch must stay cheap
    assert store.rebuild_from(jobs, 80) == 0
    assert store.watermark() == 80 and count(store) == 6_000


def test_query_aggregates_and_json(store: ResultsStore) -> None:
    store.record([row("a"), row("a", 2), row("b")], 3)
    out = store.query("WITH x AS (SELECT job_id, count(*) AS n, max(ended_at) AS last, sum(wall_ms) AS w "
                      "FROM results GROUP BY job_id) SELECT * FROM x ORDER BY job_id")
    assert out.columns == ["job_id", "n", "last", "w"]
    assert out.rows == [["a", 2, "1970-01-01T00:00:02.510000", 1000], ["b", 1, "1970-01-01T00:00:01.510000", 500]]
    assert store.query("SELECT result->>'n' AS n, labels->>'suite' FROM results WHERE attempt = 2").rows == \
        [["2", "nightly"]]
    assert store.query("SELECT 1.5::DECIMAL(4,2), 'x'::BLOB, INTERVAL 2 DAY, 'nan'::DOUBLE, sum(attempt), "
                       "'2020-01-01 10:00:00+02'::TIMESTAMPTZ, uuid() IS NOT NULL, map([1], ['a']), {'k': [1]} "
                       "FROM results").rows == \
        [[1.5, "eA==", {"months": 0, "days": 2, "nanoseconds": 0}, "nan", 4, "2020-01-01T08:00:00+00:00", True,
          [[1, "a"]], {"k": [1]}]]
    assert store.query("SELECT 1 AS a, 2 AS a").rows == [[1, 2]]  # duplicate names keep both values
    json.dumps(out.rows)


def test_a_result_of_more_rows_than_the_limit_is_refused_and_one_within_it_answered_whole(
        store: ResultsStore) -> None:
    with pytest.raises(ResultTooLarge) as info:
        store.query("SELECT * FROM range(100000000)", row_limit=10)
    assert info.value.status == 400 and info.value.code == "SQL_RESULT_LIMIT"
    assert "more than 10 rows" in info.value.message and "LIMIT and OFFSET" in info.value.message
    assert "at most 100,000" in info.value.message
    assert info.value.detail == {"limit_rows": 10, "max_limit_rows": 100_000}
    assert store.query("SELECT * FROM range(10)", row_limit=10).rows == [[i] for i in range(10)]
    assert store.query("SELECT * FROM range(100000000) LIMIT 5 OFFSET 10", row_limit=10).rows == \
        [[i] for i in range(10, 15)]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_json_auto('http://127.0.0.1:9/x.json')",
    "SELECT * FROM 'results.duckdb'",
    "COPY results TO '/tmp/haco-results-leak.csv'",
    "ATTACH '/tmp/haco-other.duckdb'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "DELETE FROM results",
    "INSERT INTO results (job_id, attempt, applied_index) VALUES ('x', 1, 1)",
    "CREATE TABLE t AS SELECT * FROM results",
    "SET threads=4",
    "SET enable_external_access=true",
    "PRAGMA database_list",
    "CALL pragma_version()",
    "EXPLAIN SELECT 1",
    "EXPORT DATABASE '/tmp/haco-export'",
    "SELECT 1; SELECT 2",
    "SELECT 1; DELETE FROM results",
    "",
])
def test_query_refuses_anything_but_one_sandboxed_select(store: ResultsStore, sql: str) -> None:
    with pytest.raises(QueryRefused) as info:
        store.query(sql)
    assert info.value.code == "SQL_REFUSED" and info.value.status == 400
    assert not Path("/tmp/haco-results-leak.csv").exists() and not Path("/tmp/haco-other.duckdb").exists()


def test_sql_errors_are_4xx(store: ResultsStore) -> None:
    for sql in ("SELEC 1", "SELECT nope FROM results", "SELECT * FROM query('DELETE FROM results')"):
        with pytest.raises(QueryError) as info:
            store.query(sql)
        assert info.value.code == "SQL_ERROR" and 400 <= info.value.status < 500


@pytest.mark.parametrize("sql", [
    "COPY results TO '/tmp/haco-results-leak.csv'", "ATTACH '/tmp/haco-other.duckdb'", "INSTALL httpfs",
    "LOAD httpfs", "SET threads=4", "SET lock_configuration=false", "SET enable_external_access=true",
    "SELECT * FROM read_text('/etc/passwd')",
])
def test_sandbox_refuses_even_without_the_statement_filter(sql: str) -> None:
    con = lockdown(pa.table({"a": [1]}), "64MB")
    secret = pa.table({"token": ["s3cr3t"]})  # a Python replacement scan would find it in this frame
    try:
        with pytest.raises(duckdb.Error):
            con.execute(sql)
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM secret")
        assert secret.num_rows == 1
        assert con.execute("SELECT current_setting('threads'), current_setting('enable_external_access')").fetchall() \
            == [(1, False)]
    finally:
        con.close()
    assert not Path("/tmp/haco-results-leak.csv").exists() and not Path("/tmp/haco-other.duckdb").exists()


def test_memory_limit_refuses_a_huge_query(store: ResultsStore) -> None:
    with pytest.raises(QueryError) as info:
        store.query("SELECT list(i) FROM range(50000000) t(i)", memory_limit="32MB", timeout_s=10)
    assert info.value.code == "SQL_MEMORY_LIMIT" and info.value.status == 400
    assert store.query("SELECT 42").rows == [[42]]


def test_timeout_interrupts_and_store_keeps_serving(store: ResultsStore) -> None:
    store.record([row("a")], 1)
    t0 = time.perf_counter()
    with pytest.raises(QueryTimeout) as info:
        store.query("SELECT count(*) FROM range(1000000000000)", timeout_s=0.5)  # ~15 min uninterrupted
    assert time.perf_counter() - t0 < 10.0  # interrupted: well short of the query, with room for a busy machine
    assert info.value.code == "SQL_TIMEOUT" and info.value.status == 408
    assert store.record([row("b")], 2) == 1
    assert count(store) == 2


def test_writes_and_queries_run_concurrently(store: ResultsStore) -> None:
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(50):
                store.record([row(f"w{i}-{k}") for k in range(100)], i + 1)
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    while thread.is_alive():
        out = store.query("SELECT count(*) FROM results")
        seen.append((out.applied_index, out.rows[0][0]))
    thread.join()
    assert not errors
    assert all(n == 100 * index for index, n in seen)  # rows and watermark come from one snapshot
    assert count(store) == 5_000 and store.watermark() == 50


def test_results_help_and_docs_name_every_column(capsys: pytest.CaptureFixture[str]) -> None:
    from haco import cli
    from haco.results.store import _SCHEMA

    assert cli.main(["results", "--help"]) == 0
    text = capsys.readouterr().out
    docs = (Path(__file__).parents[2] / "docs" / "client.md").read_text().split("### Results SQL")[1]
    assert "table `results`" in text and "over the table `results`" in docs
    for column in _SCHEMA.names:
        assert column in text, column
        assert f"`{column}`" in docs, column
