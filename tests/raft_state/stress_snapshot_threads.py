"""Stress: the replica's threads around one State, in one process, no network.

    python tests/raft_state/stress_snapshot_threads.py [--seconds 60] [--seed 1]

Not a pytest test (a timed run; the regression test is tests/raft_state/test_digest_threads.py).
Like a replica: an apply thread runs a realistic command mix (keyed submit batches, workers that
register, take assignments, complete, fail, get lost or deregister, ticks, cancels, prunes) and
captures a snapshot every `--capture-every` seconds; a writer thread dumps each capture with
`snapshot.dump` (which checks the captured records hash to the captured digest before COMMIT) and
loads it back; a reader thread polls `state.digest()` as `/api/cluster` does; a garbage thread
makes reference cycles whose collection runs Python code (weakref callbacks, as asyncio's task
WeakSet does), so collections switch threads where they happen in a replica.

Prints one line of counts and exits 1 if any dump failed its check, any load refused its file,
or the incremental digest ever differed from `full_digest()` at a checkpoint.
"""

from __future__ import annotations

import argparse
import gc
import queue
import random
import sys
import tempfile
import threading
import time
import weakref
from itertools import islice
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from raft_state import (CancelJob, DeregisterWorker, MarkWorkerLost, NewJob, PruneJobs, State,  # noqa: E402
                        SubmitJobs, Tick, queries, snapshot)
from raft_state.records import JobStatus  # noqa: E402
from tests.raft_state.state_helpers import assign, complete, fail, register, spec  # noqa: E402

T0 = 1_795_477_444_718


class Driver:
    """The apply thread's command mix, from one seeded random source."""

    def __init__(self, state: State, seed: int) -> None:
        self.s = state
        self.rng = random.Random(seed)
        self.now = T0
        self.batch = 0
        self.workers = 0

    def step(self) -> None:
        s, rng = self.s, self.rng
        self.now += rng.randint(1, 50)
        s.apply(Tick(self.now))
        b = self.batch = self.batch + 1
        n = rng.randint(1, 200)
        s.apply(SubmitJobs(self.now, tuple(
            NewJob(f"j{b}-{i}", f"k{b}-{i}" if rng.random() < 0.8 else None,
                   spec(payload={"b": b, "i": i}, priority=rng.randint(0, 3), max_retries=rng.randint(0, 2),
                        backoff_ms=rng.choice((1, 100)), depends_on=(f"j{b}-{i - 1}",) if i and rng.random() < 0.1
                        else ()))
            for i in range(n))))
        if len(s.workers) < 6 or rng.random() < 0.02:
            self.workers += 1
            s.apply(register(f"w{self.workers}", at_ms=self.now, capacity=rng.randint(1, 8)))
        for worker in queries.open_workers(s):
            for job in list(islice(queries.runnable(s, [worker]), worker.free_slots)):
                s.apply(assign(job.job_id, worker.worker_id, job.attempt + 1, at_ms=self.now))
        running = [j for w in s.workers.values() for j in w.running]
        for job_id in rng.sample(running, min(len(running), rng.randint(0, 20))):
            job = s.jobs[job_id]
            report = complete if rng.random() < 0.8 else fail
            s.apply(report(job_id, job.attempt, job.worker_id or "", at_ms=self.now))
        if rng.random() < 0.05 and s.workers:
            victim = rng.choice(sorted(s.workers))
            s.apply(MarkWorkerLost(self.now, victim) if rng.random() < 0.5 else DeregisterWorker(self.now, victim))
        if rng.random() < 0.1 and s.jobs:
            s.apply(CancelJob(self.now, f"j{rng.randint(max(1, b - 5), b)}-0", "stress"))
        if rng.random() < 0.05:
            s.apply(PruneJobs(self.now, self.now - 2_000, self.now - 4_000))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--capture-every", type=float, default=5.0, help="seconds between captures")
    args = ap.parse_args()
    gc.set_threshold(50_000, 20, 100)  # the replica's thresholds (haco/replica/runtime.py)
    state = State()
    stop = threading.Event()
    counts: dict[str, int] = dict.fromkeys(
        ("batches", "checks", "drifted", "captures", "dumps", "dump_refused", "loads", "load_refused", "reads",
         "read_errors", "gc_callbacks"), 0)
    captures: queue.Queue[Any] = queue.Queue(maxsize=2)
    tmp = tempfile.TemporaryDirectory(prefix="stress-snap-")
    workdir = Path(tmp.name)

    def writer() -> None:
        while not stop.is_set() or not captures.empty():
            try:
                n, cap = captures.get(timeout=0.1)
            except queue.Empty:
                continue
            path = workdir / f"snap-{n % 2}.duckdb"
            try:
                snapshot.dump(cap, path, raft_index=n, raft_term=1, raft_data=b"")
                counts["dumps"] += 1
            except snapshot.SnapshotError as exc:
                counts["dump_refused"] += 1
                print(f"dump {n} refused: {exc}", flush=True)
                continue
            try:
                loaded = snapshot.load(path)
                if loaded.digest != cap.digest:
                    raise snapshot.SnapshotError(f"loaded digest {loaded.digest:x}, captured {cap.digest:x}")
                counts["loads"] += 1
            except snapshot.SnapshotError as exc:
                counts["load_refused"] += 1
                print(f"load {n} refused: {exc}", flush=True)

    def reader() -> None:
        while not stop.is_set():
            try:
                state.digest()
                counts["reads"] += 1
            except RuntimeError:  # "deque mutated during iteration": the cascade moved under it
                counts["read_errors"] += 1

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    def collected(_ref: Any) -> None:
        # Python code inside a collection (a few dozen bytecodes, like WeakSet's or a __del__'s):
        # the GIL may pass to another thread here
        x = 0
        for i in range(50):
            x += i
        counts["gc_callbacks"] += 1

    def garbage() -> None:
        refs: list[Any] = []
        while not stop.is_set():
            for _ in range(200):
                refs.append(weakref.ref(Cycle(), collected))
            if len(refs) > 10_000:
                refs.clear()
            time.sleep(0.001)

    threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (writer, reader, garbage)]
    for t in threads:
        t.start()
    driver = Driver(state, args.seed)

    def check() -> None:
        """A drift stays in the XOR until found: one check per capture finds every one since the last."""
        counts["checks"] += 1
        incremental, full = state.digest(), state.full_digest()
        if incremental != full:
            counts["drifted"] += 1
            print(f"batch {counts['batches']}: incremental digest {incremental:x} != full {full:x}", flush=True)
            state._xor ^= incremental ^ full  # count the next drift apart

    start = time.monotonic()
    deadline = start + args.seconds
    next_capture = start + args.capture_every
    try:
        while time.monotonic() < deadline:
            driver.step()
            counts["batches"] += 1
            if time.monotonic() >= next_capture:
                next_capture = time.monotonic() + args.capture_every
                counts["captures"] += 1
                captures.put((counts["batches"], snapshot.capture(state)))  # a drift since the last check
                check()  # is in this capture's digest too, so its dump must refuse it
        check()
    finally:
        stop.set()
        for t in threads:
            t.join()
        tmp.cleanup()
    finals = sum(state.counts[s] for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED))
    print(" ".join(f"{k}={v}" for k, v in counts.items()) + f" jobs={len(state.jobs)} final={finals} "
          f"workers={len(state.workers)} keys={len(state.keys)}")
    bad = counts["drifted"] + counts["dump_refused"] + counts["load_refused"]
    return 1 if bad or counts["loads"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
