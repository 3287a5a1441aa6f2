"""A replica whose raft.journal was damaged while it was down: a damaged tail heals (cut, then
re-sent by the leader), damage in the middle stops it with exit 70 until the file is moved away,
an entry that keeps failing to apply stops it with exit 70 instead of spinning."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from haco.replica.journal import encode_record, scan

from .cluster import Cluster, eventually
from .test_replication import submit


def _stop(c: Cluster, i: int) -> Path:
    c.kill(i, signal.SIGTERM)
    return c.nodes[i].data_dir / "raft.journal"


def _exit_code(c: Cluster, i: int, within_s: float) -> int:
    proc = c.nodes[i].proc
    assert proc is not None
    try:
        return proc.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"replica {i} still running after {within_s}s:\n{c.dump_logs()}") from None


def _log_since(c: Cluster, i: int, offset: int) -> str:
    return c.nodes[i].log_path.read_bytes()[offset:].decode(errors="replace")


def _log_size(c: Cluster, i: int) -> int:
    p = c.nodes[i].log_path
    return p.stat().st_size if p.exists() else 0


def test_a_damaged_journal_tail_is_cut_and_refilled_by_the_leader(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    n = 0
    for damage in ("inside_last", "across_two", "garbage_after"):
        victim = next(i for i in range(3) if i != c.leader())
        for _ in range(12):
            submit(c, f"t{n}")
            n += 1
        c.converged()
        path = _stop(c, victim)
        offsets = scan(path).offsets
        size = path.stat().st_size
        with open(path, "r+b") as f:
            if damage == "inside_last":
                f.truncate(size - 5)
            elif damage == "across_two":
                f.truncate(offsets[-2] + 9)
            else:
                f.seek(size)
                f.write(os.urandom(777))
        for _ in range(3):  # what it missed while down, beyond what was cut
            submit(c, f"t{n}")
            n += 1
        mark = _log_size(c, victim)
        c.start(victim)
        started = time.monotonic()
        info = c.converged(30)
        assert time.monotonic() - started < 30
        log = _log_since(c, victim, mark)
        cuts = [line for line in log.splitlines() if "damaged tail cut off" in line]
        assert len(cuts) == 1 and str(path) in cuts[0] and "bytes" in cuts[0], log[-3000:]
        assert c.info(victim)["journal"]["cut"] is not None
        assert info["applied_index"] >= n
    assert leader in c.alive()


def test_a_flipped_byte_mid_journal_stops_the_replica_until_the_file_is_moved_away(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    for k in range(10):
        submit(c, f"m{k}")
    c.converged()
    victim = (leader + 1) % 3
    path = _stop(c, victim)
    offsets = scan(path).offsets
    at = offsets[len(offsets) // 2] + 30
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    mark = _log_size(c, victim)
    c.start(victim)
    assert _exit_code(c, victim, 20) == 70
    log = _log_since(c, victim, mark)
    assert "raft.journal" in log and f"offset {offsets[len(offsets) // 2]}" in log and "move raft.journal" in log, log
    path.rename(path.with_name("raft.journal.damaged"))
    submit(c, "after")
    c.start(victim)
    c.converged(30)  # the victim included: rebuilt from its peers
    assert victim in c.alive() and c.info(victim)["journal"]["entries"] > 0


def test_an_entry_that_keeps_failing_to_apply_stops_the_replica(cluster_factory: Any) -> None:
    """An entry whose envelope cannot be decoded (damaged with a valid checksum, or from a version
    this one cannot read): the restarted replica replays it, fails, and exits 70 with one line."""
    c: Cluster = cluster_factory(3)
    leader = c.leader()
    for k in range(6):
        submit(c, f"a{k}")
    c.converged()
    victim = (leader + 2) % 3
    path = _stop(c, victim)
    found = scan(path)
    command, idx, term = found.entries[-1]
    body = path.read_bytes()[:found.offsets[-1]] + encode_record(b"\x00not an envelope", idx, term)
    path.write_bytes(body)
    mark = _log_size(c, victim)
    c.start(victim)
    assert _exit_code(c, victim, 20) == 70
    log = _log_since(c, victim, mark)
    critical = [line for line in log.splitlines() if f"entry {idx} of" in line and "failed to apply" in line]
    assert len(critical) == 1 and "exit 70" in critical[0], log[-3000:]
    assert log.count("failed _onTick") == 0 and len(log) < 20_000, log[-3000:]
    eventually(lambda: len(c.alive()) == 2, 5, "the two others still up")
