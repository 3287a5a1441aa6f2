"""Reservations: the CPUs, memory and devices a worker's running jobs hold, and what is left.

A job's spec says what it reserves (`cpus`, `memory_gb`, `gpus` meeting `gpu_memory_gb`,
`gpu_compute`, `gpu_kind`); the assignment names the device indices, chosen by the leader and
checked here again at apply, so a deposed leader's plan cannot put two jobs on one GPU or past a
worker's CPUs or memory (docs/resources.md). Pure: the same records give the same answers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .records import Job, JobSpec, Worker, device_fits, gpu_ask

#: memory figures are floats; sums compare with this slack so 0.1 + 0.2 fits in 0.3
_EPS = 1e-9


@dataclass(slots=True)
class Free:
    """What a worker has left, as a planner's ledger (mutable: a plan subtracts as it places)."""

    slots: int
    cpus: int
    memory_gb: float
    devices: set[int]  #: free device indices

    def take(self, spec: JobSpec, devices: tuple[int, ...]) -> None:
        self.slots -= 1
        self.cpus -= spec.cpus
        self.memory_gb -= spec.memory_gb
        self.devices.difference_update(devices)


def free_of(worker: Worker, jobs: Mapping[str, Job]) -> Free:
    """A worker's free slots, CPUs, memory and devices, from its running jobs' specs."""
    cpus, memory = 0, 0.0
    for job_id in worker.running:  # a tuple in assignment order: the same sum on every replica
        job = jobs.get(job_id)
        if job is not None:
            cpus += job.spec.cpus
            memory += job.spec.memory_gb
    return Free(worker.free_slots, worker.cpus - cpus, worker.memory_gb - memory,
                {d.index for d in worker.devices} - worker.busy_devices())


def pick_devices(spec: JobSpec, worker: Worker, free: Collection[int]) -> tuple[int, ...] | None:
    """The lowest free device indices that meet the job's GPU ask; () for no GPUs; None if short."""
    if not spec.gpus:
        return ()
    picked = tuple(sorted(d.index for d in worker.devices if d.index in free and device_fits(spec, d)))
    return picked[:spec.gpus] if len(picked) >= spec.gpus else None


def shortage(spec: JobSpec, worker: Worker, free: Free) -> str | None:
    """What `free` lacks for one more job of `spec`, in words; None when it fits."""
    if free.slots <= 0:
        return "no free slot"
    if spec.cpus > free.cpus:
        return f"needs {spec.cpus} CPUs, {max(free.cpus, 0)} of {worker.cpus} free"
    if spec.memory_gb > free.memory_gb + _EPS:
        return f"needs {spec.memory_gb:g} GB memory, {max(free.memory_gb, 0):g} of {worker.memory_gb:g} GB free"
    if pick_devices(spec, worker, free.devices) is None:
        usable = sum(1 for d in worker.devices if d.index in free.devices and device_fits(spec, d))
        return f"{gpu_ask(spec)}, {usable} free" if worker.devices else f"{gpu_ask(spec)}, has no GPUs"
    return None


def assign_problem(spec: JobSpec, worker: Worker, jobs: Mapping[str, Job], devices: tuple[int, ...]) -> str | None:
    """Why apply refuses placing a job of `spec` on `worker` with `devices`; None when it may."""
    free = free_of(worker, jobs)
    if spec.cpus > free.cpus or spec.memory_gb > free.memory_gb + _EPS:
        return "cpus or memory short"
    if len(devices) != spec.gpus or len(set(devices)) != len(devices):
        return f"needs {spec.gpus} distinct devices, the assignment names {list(devices)}"
    by_index = {d.index: d for d in worker.devices}
    for i in devices:
        d = by_index.get(i)
        if d is None or i not in free.devices or not device_fits(spec, d):
            return f"device {i} is not free or does not fit"
    return None


def fits_now(spec: JobSpec, worker: Worker, free: Free) -> tuple[int, ...] | None:
    """The devices for one more job of `spec` within `free`, or None when it does not fit now."""
    if free.slots <= 0 or spec.cpus > free.cpus or spec.memory_gb > free.memory_gb + _EPS:
        return None
    return pick_devices(spec, worker, free.devices)
