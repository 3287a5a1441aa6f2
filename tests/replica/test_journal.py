"""The journal file on its own: records round-trip, a damaged tail is cut with one warning, damage
in the middle refuses to open, the previous release's format is read and converted."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from haco.replica.journal import HEADER_SIZE, JournalCorrupt, RaftJournal, scan, write_v1


def _fill(path: Path, n: int, *, fsync: bool = False, size: int = 40) -> RaftJournal:
    j = RaftJournal(path, fsync=fsync)
    for i in range(1, n + 1):
        j.add(b"c%03d" % i + b"x" * size, i, 1 + i // 4)
    return j


def _reopen(path: Path) -> list[tuple[bytes, int, int]]:
    j = RaftJournal(path)
    try:
        return list(j)
    finally:
        j._destroy()


def test_records_round_trip_and_truncations_persist(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = _fill(path, 10, fsync=True)
    assert j.syncs >= 10
    j.deleteEntriesFrom(7)  # a term conflict: entries 8.. go
    j.add(b"new8", 8, 9)
    j.deleteEntriesTo(3)  # compaction keeps entries 4..
    j.setCurrentTerm(9, "127.0.0.1:1")
    j.setRaftCommitIndex(8)
    j._destroy()
    got = _reopen(path)
    assert [i for _, i, _ in got] == [4, 5, 6, 7, 8] and got[-1] == (b"new8", 8, 9)
    j2 = RaftJournal(path)
    assert (j2.getCurrentTerm(), j2.getVotedForNodeId(), j2.getRaftCommitIndex()) == (9, "127.0.0.1:1", 8)
    assert j2.cut is None
    j2._destroy()
    assert not Path(str(path) + ".tmp").exists()


def test_commit_index_is_clamped_to_the_last_entry(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = _fill(path, 5)
    j.setRaftCommitIndex(50)
    j._destroy()
    j = RaftJournal(path)
    assert j.getRaftCommitIndex() == 5
    j._destroy()


@pytest.mark.parametrize("damage", ["inside_last", "across_two", "garbage_after", "zeros_after"])
def test_a_damaged_tail_is_cut_with_one_warning(tmp_path: Path, damage: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "raft.journal"
    _fill(path, 20)._destroy()
    offsets = scan(path).offsets
    size = path.stat().st_size
    keep = 20
    with open(path, "r+b") as f:
        if damage == "inside_last":
            f.truncate(size - 7)
            keep = 19
        elif damage == "across_two":
            f.truncate(offsets[18] + 10)
            keep = 18
        elif damage == "garbage_after":
            f.seek(size)
            f.write(os.urandom(300))
        else:
            f.seek(size)
            f.write(b"\0" * 4096)
    caplog.set_level(logging.WARNING, logger="haco.replica.journal")
    j = RaftJournal(path)
    assert [i for _, i, _ in j] == list(range(1, keep + 1))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and "bytes" in warnings[0]
    if keep < 20:
        assert f"entries {keep + 1}-" in warnings[0] or f"entries from {keep + 1}" in warnings[0], warnings[0]
    j.add(b"again", keep + 1, 99)  # appends after the cut
    j._destroy()
    caplog.clear()
    assert [i for _, i, _ in _reopen(path)][-1] == keep + 1
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]  # the cut is for good


@pytest.mark.parametrize("where", ["payload", "length", "checksum"])
def test_a_flipped_byte_in_the_middle_refuses_to_open(tmp_path: Path, where: str) -> None:
    path = tmp_path / "raft.journal"
    _fill(path, 20)._destroy()
    rec = scan(path).offsets[8]
    at = {"payload": rec + 12 + 20, "length": rec + 1, "checksum": rec + 6}[where]
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))
    before = path.read_bytes()
    with pytest.raises(JournalCorrupt) as info:
        RaftJournal(path)
    msg = str(info.value)
    assert "raft.journal" in msg and f"offset {rec}" in msg and "move raft.journal" in msg
    assert path.read_bytes() == before  # nothing is cut on the way out


def test_a_flipped_byte_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    _fill(path, 5)._destroy()
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert [i for _, i, _ in _reopen(path)] == [1, 2, 3, 4]


def test_a_bad_file_header_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    _fill(path, 3)._destroy()
    data = bytearray(path.read_bytes())
    data[0:8] = b"XXXXXXXX"
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="offset 0"):
        RaftJournal(path)


def test_format_1_is_read_and_converted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import pickle
    path = tmp_path / "raft.journal"
    entries = [(b"\x00cmd%d" % i, i, 2) for i in range(1, 8)]
    write_v1(path, entries)
    Path(str(path) + ".meta").write_bytes(pickle.dumps({"raftCommitIndex": 6, "currentTerm": 3,
                                                        "votedForNodeId": "127.0.0.1:9"}, protocol=2))
    caplog.set_level(logging.INFO, logger="haco.replica.journal")
    j = RaftJournal(path)
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # converted; the zero padding is no damage
    assert list(j) == entries
    assert (j.getRaftCommitIndex(), j.getCurrentTerm(), j.getVotedForNodeId()) == (6, 3, "127.0.0.1:9")
    j.setCurrentTerm(4, None)
    j._destroy()
    assert path.read_bytes()[:8] == b"HACOJRNL" and scan(path).format == 2
    assert json.loads(Path(str(path) + ".meta").read_bytes())["currentTerm"] == 4
    assert _reopen(path) == entries


def test_format_1_torn_tail_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    write_v1(path, [(b"\x00cmd%d" % i, i, 2) for i in range(1, 8)])
    data = path.read_bytes()
    end = int.from_bytes(data[36:40], "little")
    path.write_bytes(data[:end - 5])  # the header now points past the file
    assert [i for _, i, _ in _reopen(path)] == [1, 2, 3, 4, 5, 6]


def test_format_1_meta_never_builds_objects(tmp_path: Path) -> None:
    import pickle
    path = tmp_path / "raft.journal"
    write_v1(path, [(b"\x00a", 1, 1)])
    Path(str(path) + ".meta").write_bytes(pickle.dumps({"currentTerm": Path("/x")}))
    j = RaftJournal(path)  # the pickle needs a class: refused, the meta counts as lost
    assert j.getCurrentTerm() == 0
    j._destroy()


def test_an_empty_or_new_file_opens_empty(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = RaftJournal(path)
    assert len(j) == 0 and path.stat().st_size == HEADER_SIZE
    j._destroy()
    path.write_bytes(b"")
    j = RaftJournal(path)
    assert len(j) == 0
    j._destroy()


def test_the_apply_guard_stops_only_on_repeats_at_one_index(tmp_path: Path) -> None:
    from haco.replica.journal import ApplyGuard
    stopped: list[int] = []

    class Guard(ApplyGuard):
        def stop(self, index: int, exc: BaseException) -> None:
            stopped.append(index)

    g = Guard(tmp_path / "raft.journal")
    g.failed(5, ValueError("x"))
    g.failed(5, ValueError("x"))
    g.ok(5)  # it went through in the end
    g.failed(6, ValueError("x"))
    g.failed(7, ValueError("x"))
    assert stopped == []
    g.failed(7, ValueError("x"))
    g.failed(7, ValueError("x"))
    assert stopped == [7]
