"""`--fsync` on a real file: haco's journal (haco/replica/journal.py), handed to the Raft fork opened."""

from __future__ import annotations

from pathlib import Path

from haco.config import NodeConfig
from haco.replica.journal import RaftJournal


def test_fsync_journal_syncs_each_change_once_and_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    j = RaftJournal(path, fsync=True)
    base = j.syncs
    for i in range(1, 11):
        j.add(b"cmd%d" % i, i, 1)
    assert j.syncs == base + 10
    j.deleteEntriesTo(6)  # compaction: the kept records go to a new file, synced, renamed into place
    j.deleteEntriesFrom(3)  # truncation after a term conflict
    assert j.syncs == base + 11
    j.setCurrentTerm(7, "r2")
    j._destroy()
    again = RaftJournal(path)
    assert list(again) == [(b"cmd7", 7, 1), (b"cmd8", 8, 1), (b"cmd9", 9, 1)]
    assert again.getCurrentTerm() == 7 and again.getVotedForNodeId() == "r2"
    again._destroy()


def test_fsync_flag_from_env() -> None:
    base = {"HACO_ID": "r1", "HACO_RAFT_ADDR": "127.0.0.1:1", "HACO_RAFT_PASSWORD": "x", "HACO_INSECURE_OPEN_API": "1"}
    assert NodeConfig.from_env(base).raft.fsync is False
    assert NodeConfig.from_env({**base, "HACO_FSYNC": "1"}).raft.fsync is True
    assert NodeConfig.from_env({**base, "HACO_ENTRY_COMMANDS_MAX": "1"}).raft.entry_commands_max == 1
