"""The SQL sandbox's limits: values Python cannot hold, text UTF-8 cannot encode, and memory, time
and result size bounds that hold (the child process's address space, not the replica's, grows)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from haco.results.store import QueryError, QueryTimeout, QueryTooLarge, ResultsStore, ResultTooLarge
from haco.results.sandbox import ADDRESS_SPACE_EXTRA


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResultsStore]:
    s = ResultsStore.open(tmp_path_factory.mktemp("results") / "results.duckdb")
    yield s
    s.close()


@pytest.mark.parametrize("sql, text", [
    ("SELECT 'infinity'::DATE AS v", "infinity"),
    ("SELECT '-infinity'::TIMESTAMP AS v", "-infinity"),
    ("SELECT '200000-01-01'::DATE AS v", "200000-01-01"),
    ("SELECT 'infinity'::TIMESTAMPTZ AS v", "infinity"),
])
def test_values_python_cannot_hold_are_rendered_as_text(store: ResultsStore, sql: str, text: str) -> None:
    out = store.query(sql)
    assert out.columns == ["v"] and out.rows == [[text]]


def test_a_column_of_ordinary_and_infinite_dates_is_text_and_others_keep_their_type(store: ResultsStore) -> None:
    out = store.query("SELECT d, n FROM (VALUES ('2026-01-02'::DATE, 1), ('infinity'::DATE, 2)) t(d, n) ORDER BY n")
    assert out.rows == [["2026-01-02", 1], ["infinity", 2]]


def test_sql_with_a_lone_surrogate_is_a_400_naming_the_field(store: ResultsStore) -> None:
    with pytest.raises(QueryError) as info:
        store.query("SELECT '\ud800'")
    assert info.value.status == 400 and info.value.detail == {"field": "sql"}


@pytest.mark.parametrize("sql", [
    "SELECT list(range(10000000))",  # DuckDB's memory_limit does not see it: the address-space bound does
    "SELECT list(range(100000000))",
    "SELECT repeat('x', 500000000)",
    "SELECT a.range, b.range FROM range(100000) a, range(100000) b ORDER BY 1 DESC, 2",
])
def test_memory_hungry_queries_are_refused_naming_the_limit_and_the_replica_does_not_grow(
        store: ResultsStore, sql: str) -> None:
    me = psutil.Process()
    before = me.memory_info().rss
    t0 = time.monotonic()
    with pytest.raises(QueryTooLarge) as info:
        store.query(sql, timeout_s=10)
    assert time.monotonic() - t0 < 10
    assert info.value.code == "SQL_MEMORY_LIMIT" and info.value.status == 400
    assert "memory_limit" in info.value.message and "address space" in info.value.message
    assert me.memory_info().rss - before < 50 << 20
    assert store.query("SELECT 42").rows == [[42]]  # the sandbox keeps serving


@pytest.mark.parametrize("row_limit", [10_000, 100_000])
def test_a_cross_join_is_refused_at_the_row_limit_without_running_to_its_end(
        store: ResultsStore, row_limit: int) -> None:
    me = psutil.Process()
    before = me.memory_info().rss
    t0 = time.monotonic()
    with pytest.raises(ResultTooLarge) as info:  # 1e10 rows: it stops at the limit's next row
        store.query("SELECT * FROM range(100000) a, range(100000) b", row_limit=row_limit)
    assert time.monotonic() - t0 < 4
    assert info.value.status == 400 and info.value.code == "SQL_RESULT_LIMIT"
    assert f"more than {row_limit:,} rows (the row limit)" in info.value.message
    assert "LIMIT and OFFSET" in info.value.message
    assert info.value.detail == {"limit_rows": row_limit, "max_limit_rows": 100_000}
    assert me.memory_info().rss - before < 50 << 20


def test_range_of_a_float_is_a_binder_error_and_its_integer_form_hits_the_memory_limit(store: ResultsStore) -> None:
    with pytest.raises(QueryError) as info:  # 1e7 is a DOUBLE; range() takes BIGINT and DuckDB casts no DOUBLE down
        store.query("SELECT list(range(1e7))")
    assert type(info.value) is QueryError and info.value.status == 400 and info.value.code == "SQL_ERROR"
    assert "range(DOUBLE)" in info.value.message and "explicit type casts" in info.value.message
    with pytest.raises(QueryTooLarge) as too_large:
        store.query("SELECT list(range(1e7::BIGINT))", timeout_s=10)
    assert too_large.value.code == "SQL_MEMORY_LIMIT" and "memory_limit" in too_large.value.message


def test_a_long_aggregate_stops_at_the_time_limit(store: ResultsStore) -> None:
    with pytest.raises(QueryTimeout) as info:
        store.query("SELECT sum(a.range * b.range) FROM range(100000) a, range(100000) b", timeout_s=1)
    assert info.value.status == 408 and "time limit" in info.value.message


def test_a_result_over_the_byte_limit_is_refused_naming_it(store: ResultsStore) -> None:
    with pytest.raises(ResultTooLarge) as info:
        store.query("SELECT repeat('x', 1000000) FROM range(100)", row_limit=100)
    assert info.value.code == "SQL_RESULT_LIMIT" and "MiB" in info.value.message


def test_a_child_that_died_while_idle_is_replaced(store: ResultsStore) -> None:
    assert store.query("SELECT 1").rows == [[1]]
    for child in store._sandbox._idle:
        child.proc.kill()
        child.proc.wait()
    assert store.query("SELECT 2").rows == [[2]]


def test_the_address_space_bound_is_documented() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "security.md"
    if docs.exists():
        assert f"{ADDRESS_SPACE_EXTRA >> 20} MiB" in docs.read_text()
