"""The snapshot dump streams Arrow batches of CHUNK_ROWS rows (so it never holds the GIL for a
whole column beside the Raft tick thread, nor a whole table in memory); a chunked dump loads back
to the same state."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from raft_state import State, snapshot
from raft_state import snapshot_tables as T

from tests.raft_state.state_helpers import assign, register, spec, submit


def test_chunked_dump_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(T, "CHUNK_ROWS", 7)
    state = State()
    state.apply(register("w1", capacity=3))
    for i in range(50):
        state.apply(submit(f"job-{i:03d}", spec(priority=i % 3), key=f"k{i}", at_ms=i))
    state.apply(assign("job-000", "w1", 1, at_ms=60))
    table = T.stream("keys", T.rows(list(state.keys.values()))).read_all()
    assert table.column("key").num_chunks > 1 and table.num_rows == 50
    jobs = T.stream("jobs", T.jobs(list(state.jobs.values()), [True] * 50)).read_all()
    assert jobs.column("payload").num_chunks > 1 and jobs.num_rows == 50
    path = tmp_path / "s.duckdb"
    snapshot.dump(snapshot.capture(state), path, raft_index=9, raft_term=2, raft_data=b"r")
    loaded = snapshot.load(path)
    assert loaded.state.digest() == state.digest()
    assert len(loaded.state.jobs) == 50


def test_a_capture_whose_records_do_not_match_its_digest_is_never_written(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(T, "CHUNK_ROWS", 7)
    state = State()
    state.apply(register("w1", capacity=3))
    for i in range(20):
        state.apply(submit(f"job-{i}", spec(), key=f"k{i}", at_ms=1))
    cap = snapshot.capture(state)
    assert snapshot.capture_digest(cap) == cap.digest == state.full_digest()
    bad = snapshot.Capture(**{f: getattr(cap, f) for f in snapshot.Capture.__slots__ if f != "digest"}, digest=cap.digest ^ 1)
    path = tmp_path / "s.duckdb"
    with pytest.raises(snapshot.SnapshotError, match="captured records hash to"):
        snapshot.dump(bad, path, raft_index=1, raft_term=1, raft_data=b"r")
    assert not path.exists() and not path.with_name("s.duckdb.wal").exists()
    snapshot.dump(cap, path, raft_index=1, raft_term=1, raft_data=b"r")
    assert snapshot.load(path).digest == cap.digest


def test_column_decoding_shares_constants_but_keeps_every_value_exact() -> None:
    """A constant column converts one value and shares it; anything else converts value by value.
    -0.0 equals 0.0 but packs (and hashes) differently, so a float column compares bits."""
    import pyarrow as pa

    zeros = pa.chunked_array([[0.0, -0.0], [0.0]])
    assert [str(v) for v in T.pylist(zeros)] == ["0.0", "-0.0", "0.0"]
    same = T.pylist(pa.chunked_array([[600_000, 600_000], [600_000]]))
    assert same == [600_000] * 3 and same[0] is same[2]
    assert T.pylist(pa.chunked_array([[1, 2, 1]])) == [1, 2, 1]  # equal ends, different middle
    assert T.pylist(pa.chunked_array([["a", None, "a"]])) == ["a", None, "a"]
    assert T.pylist(pa.chunked_array([["only"]])) == ["only"]
    assert list(islice(T.pylist(pa.chunked_array([[None, None]], pa.string())), 2)) == [None, None]

    lists = pa.chunked_array([[[], ["gpu"], None], [["gpu"], [], ["a", "b"]]], pa.list_(pa.string()))
    got = T.tuples(lists)
    assert got == [(), ("gpu",), (), ("gpu",), (), ("a", "b")]
    assert got[1] is got[3]  # equal lists share one tuple
    assert list(islice(T.tuples(pa.chunked_array([[[], None]], pa.list_(pa.string()))), 2)) == [(), ()]
