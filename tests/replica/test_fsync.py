"""`--fsync` relies on pysyncobj 0.3.17 internals (the version is pinned): pin them here, then
check the fsync journal on a real file."""

from __future__ import annotations

import gc
import inspect
import re
from pathlib import Path

import pytest
import pysyncobj.journal as pso_journal
import pysyncobj.syncobj as pso_syncobj

from haco.config import NodeConfig
from haco.replica.node import _FsyncJournal


def test_pysyncobj_internals_the_fsync_journal_relies_on() -> None:
    from pysyncobj.version import VERSION
    assert VERSION == "0.3.17"
    # SyncObj builds its journal through the module-level name we swap, from conf.journalFile
    init = inspect.getsource(pso_syncobj.SyncObj.__init__)
    assert "self.__raftLog = createJournal(self.__conf.journalFile)" in init
    assert pso_syncobj.createJournal is pso_journal.createJournal
    # every journal call SyncObj makes is one we either sync or that needs no sync
    source = inspect.getsource(pso_syncobj)
    called = set(re.findall(r"self\.__raftLog\.(\w+)\(", source))
    assert called == {"add", "clear", "deleteEntriesFrom", "deleteEntriesTo", "setCurrentTerm",
                      "setRaftCommitIndex", "getCurrentTerm", "getVotedForNodeId", "getRaftCommitIndex",
                      "onOneSecondTimer", "_destroy"}, called
    # a compaction rewrites the journal through clear() + add() (hence the bulk flag), flush is msync
    assert "self.clear()" in inspect.getsource(pso_journal.FileJournal.deleteEntriesTo)
    assert "self.add(*entry)" in inspect.getsource(pso_journal.FileJournal.deleteEntriesTo)
    assert "self.__mm.flush()" in inspect.getsource(pso_journal.ResizableFile.flush)
    assert "self.__journalFile.flush()" in inspect.getsource(pso_journal.FileJournal.flush)
    # the term and vote go to '<journal>.meta' (synchronously, by rename)
    assert "journalFile + '.meta'" in inspect.getsource(pso_journal.FileJournal.__init__)
    assert "storeMeta" in inspect.getsource(pso_journal.FileJournal.setCurrentTerm)


# pysyncobj's MetaStorer.getMeta leaves its file to the garbage collector
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_fsync_journal_syncs_each_record_once_and_stays_readable(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.journal")
    j = _FsyncJournal(path)
    base = j.syncs
    for i in range(1, 11):
        j.add(b"cmd%d" % i, i, 1)
    assert j.syncs == base + 10
    j.deleteEntriesTo(6)  # compaction: rewrite the kept records, one sync
    assert j.syncs == base + 11
    j.deleteEntriesFrom(3)  # truncation after a term conflict
    assert j.syncs == base + 12
    j.setCurrentTerm(7, "r2")
    j._destroy()
    plain = pso_journal.FileJournal(path)  # the on-disk format is pysyncobj's own
    assert [(bytes(c), i, t) for c, i, t in (plain[k] for k in range(len(plain)))] == \
        [(b"cmd7", 7, 1), (b"cmd8", 8, 1), (b"cmd9", 9, 1)]
    assert plain.getCurrentTerm() == 7 and plain.getVotedForNodeId() == "r2"
    plain._destroy()
    del j, plain
    gc.collect()


def test_fsync_flag_from_env() -> None:
    base = {"HACO_ID": "r1", "HACO_RAFT_ADDR": "127.0.0.1:1", "HACO_RAFT_PASSWORD": "x", "HACO_INSECURE_OPEN_API": "1"}
    assert NodeConfig.from_env(base).raft.fsync is False
    assert NodeConfig.from_env({**base, "HACO_FSYNC": "1"}).raft.fsync is True
    assert NodeConfig.from_env({**base, "HACO_ENTRY_COMMANDS_MAX": "1"}).raft.entry_commands_max == 1
