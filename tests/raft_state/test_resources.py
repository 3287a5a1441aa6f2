"""Reservations at apply: across random command sequences, snapshots and plans made on stale
views (a deposed leader's), no worker runs jobs reserving more CPUs or memory than it has, no
device is held twice, and every held device belongs to a running job (docs/resources.md)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from raft_state import Accepted, AssignJobs, Assignment, MarkWorkerLost, SetClusterVersion, State, snapshot
from raft_state.records import Device, JobStatus
from raft_state.resources import free_of
from tests.raft_state.state_helpers import complete, register, spec, submit

GPU = Device(kind="cuda", index=0, model="A10G", memory_gb=24.0, compute=8.6)


def _devices(n: int) -> tuple[Device, ...]:
    return tuple(Device(kind="cuda", index=i, model="A10G", memory_gb=24.0 if i else 80.0, compute=8.6)
                 for i in range(n))


def _check(s: State) -> None:
    for w in s.workers.values():
        used_cpus = sum(s.jobs[j].spec.cpus for j in w.running)
        used_mem = sum(s.jobs[j].spec.memory_gb for j in w.running)
        assert used_cpus <= w.cpus and used_mem <= w.memory_gb + 1e-9, w
        held = [i for _, d in w.held for i in d]
        assert len(held) == len(set(held)), w.held
        assert {j for j, _ in w.held} <= set(w.running)
        assert set(held) <= {d.index for d in w.devices}
        for job_id, d in w.held:
            assert len(d) == s.jobs[job_id].spec.gpus


def _fresh() -> State:
    s = State()
    s.apply(SetClusterVersion(0, 4))
    for wid, cpus, mem, gpus in (("w1", 4, 8.0, 2), ("w2", 2, 4.0, 0)):
        cmd = register(wid, capacity=4, cpus=cpus, memory_gb=mem)
        s.apply(dataclasses.replace(cmd, devices=_devices(gpus)))
    return s


step = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 4), st.sampled_from([0.0, 1.0, 3.0]), st.integers(0, 2),
              st.sampled_from([0.0, 40.0])),
    st.tuples(st.just("assign"), st.integers(0, 30), st.sampled_from(["w1", "w2"]),
              st.lists(st.integers(0, 2), max_size=2)),
    st.tuples(st.just("complete"), st.integers(0, 30)),
    st.tuples(st.just("lose"), st.sampled_from(["w1", "w2"])),
    st.tuples(st.just("snapshot"),),
)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(step, min_size=1, max_size=40))
def test_no_worker_over_any_resource_and_no_device_twice(steps: list[tuple[object, ...]]) -> None:
    s = _fresh()
    n = 0
    for st_ in steps:
        kind = st_[0]
        if kind == "submit":
            _, cpus, mem, gpus, gmem = st_
            the = spec(cpus=int(cpus)).evolve(memory_gb=mem, gpus=gpus, gpu_memory_gb=gmem if gpus else 0.0)
            s.apply(submit(f"j{n}", the))
            n += 1
        elif kind == "assign":  # any devices, any worker: what a stale plan or a deposed leader proposes
            _, j, wid, devs = st_
            job = s.jobs.get(f"j{j}")
            attempt = job.attempt + 1 if job is not None else 1
            out = s.apply(AssignJobs(0, (Assignment(f"j{j}", str(wid), attempt, tuple(devs)),)))
            assert isinstance(out, Accepted)
            event(f"assign {'accepted' if out.value == [None] else out.value[0]}")
        elif kind == "complete":
            job = s.jobs.get(f"j{st_[1]}")
            if job is not None and job.status is JobStatus.RUNNING:
                s.apply(complete(job.job_id, job.attempt, job.worker_id or ""))
        elif kind == "lose":
            s.apply(MarkWorkerLost(0, str(st_[1])))
            s.apply(register(str(st_[1]), capacity=4, cpus=4 if st_[1] == "w1" else 2,
                             memory_gb=8.0 if st_[1] == "w1" else 4.0))
        else:
            with tempfile.TemporaryDirectory() as d:
                snapshot.dump(snapshot.capture(s), Path(d) / "s.duckdb", raft_index=1, raft_term=1, raft_data=b"")
                loaded = snapshot.load(Path(d) / "s.duckdb").state
            assert loaded.digest() == s.digest() and loaded.workers == s.workers
            s = loaded
        _check(s)


def test_a_deposed_leaders_double_booking_is_refused_at_apply() -> None:
    s = _fresh()
    s.apply(submit("a", spec(cpus=1).evolve(gpus=1)))
    s.apply(submit("b", spec(cpus=1).evolve(gpus=1)))
    # two leaders planned on the same view: both picked device 0 of w1
    first = s.apply(AssignJobs(0, (Assignment("a", "w1", 1, (0,)),)))
    second = s.apply(AssignJobs(0, (Assignment("b", "w1", 1, (0,)),)))
    assert first == Accepted([None]) and second == Accepted(["RESOURCES_BUSY"])
    assert s.apply(AssignJobs(0, (Assignment("b", "w1", 1, (1,)),))) == Accepted([None])
    assert s.workers["w1"].held == (("a", (0,)), ("b", (1,)))
    f = free_of(s.workers["w1"], s.jobs)
    assert (f.cpus, f.devices) == (2, set())
    # an ask beyond the device's memory and a count that does not match are refused too
    s.apply(submit("c", spec().evolve(gpus=1, gpu_memory_gb=48.0)))
    assert s.apply(AssignJobs(0, (Assignment("c", "w1", 1, ()),))) == Accepted(["RESOURCES_BUSY"])


def test_below_version_4_cpus_stay_a_minimum_and_reservations_are_refused() -> None:
    s = State()
    s.apply(register("w", capacity=4, cpus=2))
    for j in ("a", "b", "c"):
        assert isinstance(s.apply(submit(j, spec(cpus=2))), Accepted)
    outs = [s.apply(AssignJobs(0, (Assignment(j, "w", 1),))) for j in ("a", "b", "c")]
    assert outs == [Accepted([None])] * 3  # the old rule, so an old log replays the same
    assert s.apply(submit("d", spec().evolve(gpus=1))).code == "VERSION_GATED"  # type: ignore[union-attr]
