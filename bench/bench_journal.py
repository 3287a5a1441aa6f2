"""What a journal append costs, and the checksum's share of it.

    python bench/bench_journal.py [--records N] [--sizes 100,1000,65536]

For each command size: the checksum alone (xxh3_64 of the record payload), encoding a record,
one `RaftJournal.add` without and with fsync (fdatasync per record), and pysyncobj 0.3.17's
FileJournal.add (the previous format: an mmap write, no checksum, never synced) for comparison.
Figures are microseconds per append, median of 5 runs, on the current directory's disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import xxhash

from haco.replica.journal import RaftJournal, encode_record


def _per_call_us(fn: Callable[[int], None], n: int, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for i in range(1, n + 1):
            fn(i)
        samples.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(samples)


def _journal_add_us(size: int, n: int, *, fsync: bool, pysyncobj: bool = False) -> float:
    command = b"x" * size
    samples = []
    for _ in range(5 if not fsync else 3):
        with tempfile.TemporaryDirectory(prefix="bench-journal-", dir=".") as tmp:
            path = Path(tmp) / "raft.journal"
            if pysyncobj:
                from pysyncobj.journal import FileJournal
                j = FileJournal(str(path))
            else:
                j = RaftJournal(path, fsync=fsync)
            started = time.perf_counter()
            for i in range(1, n + 1):
                j.add(command, i, 1)
            samples.append((time.perf_counter() - started) / n * 1e6)
            j._destroy()
    return statistics.median(samples)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=2000)
    p.add_argument("--fsync-records", type=int, default=200)
    p.add_argument("--sizes", default="100,1000,65536")
    args = p.parse_args()
    warnings.simplefilter("ignore", ResourceWarning)  # pysyncobj's meta reader leaves a file to the GC
    print(f"{'size':>7} {'xxh3':>8} {'encode':>8} {'add':>8} {'add+fsync':>10} {'pysyncobj':>10}  (us per append)")
    for size in (int(s) for s in args.sizes.split(",")):
        payload = b"x" * (size + 16)
        xxh = _per_call_us(lambda i: xxhash.xxh3_64_intdigest(payload, seed=len(payload)), args.records)
        enc = _per_call_us(lambda i: encode_record(payload[16:], i, 1), args.records)
        add = _journal_add_us(size, args.records, fsync=False)
        synced = _journal_add_us(size, args.fsync_records, fsync=True)
        old = _journal_add_us(size, args.records, fsync=False, pysyncobj=True)
        print(f"{size:>7} {xxh:>8.2f} {enc:>8.2f} {add:>8.2f} {synced:>10.1f} {old:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
