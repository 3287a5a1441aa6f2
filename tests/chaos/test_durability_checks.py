"""The durability checks on fabricated histories, and the journal damage on a real journal file."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from chaos.durability_checks import executions_once, journal_damage, replicas_applying
from chaos.journal_damage import damage, record_offsets
from haco.replica.journal import JournalCorrupt, encode_record, scan


def _job(job_id: str, attempts: int) -> dict[str, Any]:
    return {"kind": "final_job", "job": {"job_id": job_id, "attempts": [{"attempt": n + 1} for n in range(attempts)]}}


def test_executions_once_passes_one_run_per_attempt_and_flags_a_second_run() -> None:
    clean = [_job("j1", 2), _job("j2", 1), {"kind": "fault", "fault": "worker_restart"},
             {"kind": "executions", "rows": [["j1", 1, 10], ["j1", 2, 11], ["j2", 1, 12]]}]
    check = executions_once(clean)
    assert check.ok, check.problems
    assert check.figures["jobs_run_more_than_once"] == 1 and check.figures["attempts_run_twice"] == 0
    twice = clean[:-1] + [{"kind": "executions", "rows": [["j1", 1, 10], ["j1", 2, 11], ["j2", 1, 12], ["j2", 1, 13]]}]
    check = executions_once(twice)
    assert not check.ok and "attempt 1 of job j2 ran 2 times" in check.problems[0]


def test_executions_once_needs_a_record_after_worker_restarts() -> None:
    assert not executions_once([{"kind": "fault", "fault": "worker_restart"}]).ok


def test_replicas_applying_flags_a_replica_that_never_reached_the_index() -> None:
    stuck = {"target": 90, "seconds": None, "bound_s": 30.0, "applied": {"r1": 90, "r2": 41}, "behind": ["r2"]}
    check = replicas_applying([{"kind": "final", "applied": stuck}])
    assert not check.ok and "r2" in check.problems[0]
    assert not replicas_applying([{"kind": "final"}]).ok


def test_journal_damage_wants_exit_70_for_a_flip_and_one_warning_for_a_tail() -> None:
    good = [{"kind": "fault", "fault": "journal_flip", "detail": "x", "exit_code": 70, "rejoined": True,
             "caught_up_s": 3.0},
            {"kind": "fault", "fault": "journal_tail", "detail": "y", "cut_logged": 1, "rejoined": True,
             "caught_up_s": 1.0},
            {"kind": "fault", "fault": "journal_tail", "detail": None}]
    check = journal_damage(good)
    assert check.ok and check.figures["skipped"] == 1 and check.figures["caught_up_max_s"] == 3.0
    bad = [{**good[0], "exit_code": 1}, {**good[1], "cut_logged": 0, "rejoined": False}]
    assert len(journal_damage(bad).problems) == 3


def _journal(path: Path, n: int) -> Path:
    header = b"HACOJRNL" + (2).to_bytes(4, "little") + bytes(4)
    path.write_bytes(header + b"".join(encode_record(b"command %d" % i * 3, i + 1, 1) for i in range(n)))
    return path


@pytest.mark.parametrize("kind", ["cut_inside_last", "cut_across", "append_garbage"])
def test_tail_damage_is_what_the_journal_cuts_off(tmp_path: Path, kind: str) -> None:
    path = _journal(tmp_path / "raft.journal", 12)
    assert len(record_offsets(path)) == 12
    for seed in range(20):
        _journal(path, 12)
        assert damage(path, kind, random.Random(seed)) is not None
        kept = len(scan(path).entries)  # a torn tail is cut at open, never refused
        assert kept < 12 or kind == "append_garbage"


def test_a_flip_in_the_middle_is_refused_as_corrupt(tmp_path: Path) -> None:
    path = _journal(tmp_path / "raft.journal", 12)
    for seed in range(20):
        _journal(path, 12)
        assert damage(path, "flip_middle", random.Random(seed)) is not None
        with pytest.raises(JournalCorrupt):
            scan(path)
    assert damage(_journal(path, 2), "flip_middle", random.Random(1)) is None
