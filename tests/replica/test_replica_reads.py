"""What `/api/cluster` reports while the tick thread applies: each applied index with its own digest.

`haco status` and the test harness compare replicas' digests at equal applied indexes, so a
report must pair an index with the digest of exactly that state: never a digest read while an
entry was half applied, or after the index moved on (a false DIVERGED), and never an error.
"""

from __future__ import annotations

import threading
from pathlib import Path

from haco.config import NodeConfig
from haco.replica.node import Replica
from raft_state import NewJob, SubmitJobs, Tick, encode, parse_job

T0 = 1_795_477_444_718


def test_cluster_info_pairs_each_applied_index_with_its_digest(tmp_path: Path) -> None:
    replica = Replica(NodeConfig(id="r1", raft_addr="127.0.0.1:1", data_dir=tmp_path, insecure_open_api=True))
    spec, _ = parse_job({"type": "noop", "payload": {}})
    entries = [encode(Tick(T0 + b), SubmitJobs(T0 + b, tuple(
        NewJob(f"j{b}-{i}", f"k{b}-{i}", spec) for i in range(40)))) for b in range(400)]
    published = {replica.applied_index: replica.state.digest()}  # before any entry, nothing moves

    def tick_thread() -> None:
        for entry in entries:
            replica._apply_on_tick(entry)
            published[replica.applied_index] = replica.state.digest()  # only this thread changes the state

    t = threading.Thread(target=tick_thread)
    t.start()
    reads: list[tuple[int, str]] = []
    while t.is_alive():
        info = replica.info()
        reads.append((info["applied_index"], info["digest"]))
    t.join()
    assert len(replica.state.jobs) == 400 * 40 and replica.applied_index == 400
    assert len({i for i, _ in reads}) > 20, "the reads did not overlap the applies: the test proves nothing"
    wrong = [(i, d) for i, d in reads if d != f"{published[i]:016x}"]
    assert not wrong, f"{len(wrong)} of {len(reads)} reports paired an index with another state's digest"
