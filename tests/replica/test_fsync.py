"""haco's journal (haco/replica/journal.py) is installed through pysyncobj 0.3.17 internals (the
version is pinned): pin them here, then check `--fsync` on a real file."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pysyncobj.journal as pso_journal
import pysyncobj.syncobj as pso_syncobj

from haco.config import NodeConfig
from haco.replica.journal import RaftJournal


def test_pysyncobj_internals_the_journal_relies_on() -> None:
    from pysyncobj.version import VERSION
    assert VERSION == "0.3.17"
    # SyncObj builds its journal through the module-level name we swap, from conf.journalFile
    init = inspect.getsource(pso_syncobj.SyncObj.__init__)
    assert "self.__raftLog = createJournal(self.__conf.journalFile)" in init
    assert pso_syncobj.createJournal is pso_journal.createJournal
    # every journal call SyncObj makes is one RaftJournal implements (and syncs, when it writes)
    source = inspect.getsource(pso_syncobj)
    called = set(re.findall(r"self\.__raftLog\.(\w+)\(", source))
    assert called == {"add", "clear", "deleteEntriesFrom", "deleteEntriesTo", "setCurrentTerm",
                      "setRaftCommitIndex", "getCurrentTerm", "getVotedForNodeId", "getRaftCommitIndex",
                      "onOneSecondTimer", "_destroy"}, called
    assert all(callable(getattr(RaftJournal, name)) for name in called)


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
