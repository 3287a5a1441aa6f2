"""Record hashes stay right while another thread hashes: the snapshot digest-mismatch bug.

The digest's msgpack Packer was one object for all threads. Packing a record (a tuple subclass)
allocates an iterator; the allocation can start a garbage collection, which runs Python code
(finalizers, weakref callbacks), and there the GIL can pass to another thread. If that thread
packed too (the event loop's `/api/cluster` reads `state.digest()`, the snapshot writer checks
every captured record's hash), it appended to the shared buffer and reset it, so both hashes came
out wrong. In test_big_snapshot a replica's incremental digest took one wrong key hash this way
and its next snapshot carried a digest its own records did not hash to (evidence: the saved digest
XOR the rebuilt one equals key_hash(k) XOR the hash of k's packing less its array header).

These tests make the thread switch happen at that moment, every time: a gc callback (run at the
start of each collection) hands the GIL to a thread that hashes and waits for it, with the
collector's threshold at 1 so the record's iterator allocation starts a collection.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable
from typing import Any

from raft_state import NewJob, State, SubmitJobs, Tick
from raft_state.digest import BulkHashes, job_hash, key_hash, scalars_hash
from raft_state.records import Attempt, KeyRecord
from tests.raft_state.state_helpers import assign, complete, register, spec, submit

T0 = 1_795_477_444_718
OTHER_FIELDS = [T0, False, 1, 60442, 0, 0, 60442, []]


def run_until_hashes_interrupted(step: Callable[[int], None], work: Callable[[], None], times: int = 5) -> int:
    """`step(i)` for i = 0, 1, ... until garbage collections started inside a record hash `times`
    times (bounded); returns how many steps ran. Every collection that starts during a step first
    runs `work` on another thread and waits for it (the GIL passes to it and back). The collector
    runs at almost every allocation (threshold 1); before each step a full collection and 0-2 new
    live objects shift where the step's first collection falls."""
    interrupted: list[str] = []
    armed = False

    def on_gc(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start" and armed:
            t = threading.Thread(target=work)
            t.start()
            t.join()
            interrupted.append(sys._getframe(1).f_code.co_name)

    threshold = gc.get_threshold()
    gc.callbacks.append(on_gc)
    try:
        for i in range(500):
            gc.collect()
            gc.set_threshold(1)
            spacer_a = [] if i % 3 >= 1 else None  # no comprehension: exactly 0, 1 or 2 allocations
            spacer_b = [] if i % 3 >= 2 else None
            armed = True
            step(i)
            armed = False
            gc.set_threshold(*threshold)
            del spacer_a, spacer_b
            if sum(name.endswith("_hash") for name in interrupted) >= times:
                return i + 1
    finally:
        armed = False
        gc.set_threshold(*threshold)
        gc.callbacks.remove(on_gc)
    raise AssertionError(f"no collection started inside a record hash in 500 steps: {interrupted[:20]}")


def test_a_key_hash_is_right_while_another_thread_hashes() -> None:
    """The recorded failure: a KeyRecord hashed on the tick thread while another thread hashed."""
    k = KeyRecord(key="big-29-672", job_id="70f19823c4c84f16a80c952a6983c481", spec_hash=b"\xfb" * 16,
                  created_at_ms=T0, seq=58673)
    expected, expected_other = key_hash(k), scalars_hash(OTHER_FIELDS)  # computed undisturbed
    got: list[int] = []
    others: list[int] = []
    run_until_hashes_interrupted(lambda _i: got.append(key_hash(k)),
                                 lambda: others.append(scalars_hash(OTHER_FIELDS)))
    assert set(got) == {expected}
    assert set(others) == {expected_other}


def test_a_job_hash_with_attempts_is_right_while_another_thread_hashes() -> None:
    """Attempts are records too (tuple subclasses): each one's iterator is a point of switch."""
    s = State()
    for cmd in (Tick(T0), register("w", at_ms=T0), submit("a", at_ms=T0), assign("a", "w", 1, at_ms=T0),
                complete("a", 1, "w", at_ms=T0 + 5)):
        s.apply(cmd)  # type: ignore[arg-type]
    job = s.jobs["a"]
    assert job.attempts and isinstance(job.attempts[0], Attempt)
    k = KeyRecord(key="k", job_id="j", spec_hash=b"", created_at_ms=0, seq=1)
    expected, expected_other = job_hash(job), key_hash(k)
    got: list[int] = []
    others: list[int] = []
    run_until_hashes_interrupted(lambda _i: got.append(job_hash(job)), lambda: others.append(key_hash(k)))
    assert set(got) == {expected}
    assert set(others) == {expected_other}


def test_the_incremental_digest_does_not_drift_while_another_thread_reads_it() -> None:
    """The symptom as the replica saw it: keyed submits applied on one thread while another thread
    reads `state.digest()` (as `/api/cluster` does) leave the incremental digest equal to one
    recomputed from the records."""
    s = State()
    s.apply(Tick(T0))
    read: list[int] = []

    def submit_batch(b: int) -> None:
        s.apply(SubmitJobs(T0, tuple(NewJob(f"j{b}-{i}", f"big-{b}-{i}", spec(payload={"b": b, "i": i}))
                                     for i in range(5))))

    steps = run_until_hashes_interrupted(submit_batch, lambda: read.append(s.digest()))
    assert len(s.jobs) == len(s.keys) == 5 * steps and read
    assert s.digest() == s.full_digest()


def test_bulk_hashes_equal_the_module_hashes() -> None:
    s = State()
    for cmd in (Tick(T0), register("w", at_ms=T0), submit("a", at_ms=T0, key="ka"), assign("a", "w", 1, at_ms=T0),
                complete("a", 1, "w", at_ms=T0 + 5), submit("b", at_ms=T0, key="kb")):
        s.apply(cmd)  # type: ignore[arg-type]
    bulk = BulkHashes()
    assert [bulk.job(j) for j in s.jobs.values()] == [job_hash(j) for j in s.jobs.values()]
    assert [bulk.key(k) for k in s.keys.values()] == [key_hash(k) for k in s.keys.values()]
    assert s.digest() == s.full_digest()
