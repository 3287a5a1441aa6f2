"""Reservations on real workers: a fake nvidia-smi with two 24 GB GPUs on PATH, a CPU-only worker
beside it; devices handed out exactly once, the rest waits with a reason; `--cpus` and
`--memory-gb` never exceeded; a hanging nvidia-smi costs a worker its probe timeout and nothing
else (docs/resources.md)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import psutil

from haco.cli.format import share_texts

from .cluster import Cluster, eventually, http
from .test_workers import final, job_on, submit

FAKE_SMI = """#!/bin/sh
# prints what nvidia-smi --query-gpu=index,name,memory.total,compute_cap --format=csv,noheader,nounits does
echo "0, NVIDIA A10G, 24564, 8.6"
echo "1, NVIDIA A10G, 24564, 8.6"
"""


def _fake_path(tmp: Path, script: str) -> str:
    bin_dir = tmp / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text(script)
    exe.chmod(0o755)
    return f"{bin_dir}:{os.environ.get('PATH', '')}"


def _start_worker_with_path(c: Cluster, wid: str, path: str, **kw: Any) -> None:
    saved = dict(c.extra_env)
    c.extra_env["PATH"] = path
    try:
        c.start_worker(wid, **kw)
    finally:
        c.extra_env.clear()
        c.extra_env.update(saved)


def _gpu_job(gpus: int, argv: list[str], **reqs: Any) -> dict[str, Any]:
    return {"type": "shell", "payload": {"argv": argv}, "requirements": {"gpus": gpus, **reqs}}


def _workers(c: Cluster) -> dict[str, dict[str, Any]]:
    status, body = http("GET", c.nodes[c.leader()].url + "/api/workers")
    assert status == 200, body
    return {w["worker_id"]: w for w in body["workers"]}


def test_gpus_are_reserved_exported_and_waited_for(cluster_factory: Any, tmp_path: Path) -> None:
    c: Cluster = cluster_factory(1)
    _start_worker_with_path(c, "gpu", _fake_path(tmp_path, FAKE_SMI), capacity=4)
    c.start_worker("cpu", capacity=2)
    eventually(lambda: {"gpu", "cpu"} <= set(_workers(c)) and len(_workers(c)["gpu"]["devices"]) == 2, 30,
               "both workers registered, the GPU one with two devices")
    devices = _workers(c)["gpu"]["devices"]
    assert [(d["index"], d["kind"], d["model"], round(d["memory_gb"])) for d in devices] == [
        (0, "cuda", "NVIDIA A10G", 24), (1, "cuda", "NVIDIA A10G", 24)]
    assert _workers(c)["cpu"]["devices"] == []

    both_id = submit(c, _gpu_job(2, ["sh", "-c", "echo CUDA=$CUDA_VISIBLE_DEVICES; sleep 2"]))
    eventually(lambda: job_on(c, 0, both_id)["status"] == "running", 20, "the 2-GPU job running")
    gpu_worker = _workers(c)["gpu"]
    assert gpu_worker["reserved"]["devices"] == [0, 1] and share_texts(gpu_worker)[2] == "2/2"  # `haco workers`
    both = final(c, both_id)
    assert both["status"] == "completed", both
    assert both["attempts"][-1]["worker_id"] == "gpu"
    assert "CUDA=0,1" in both["result"]["stdout_tail"]

    # two 1-GPU jobs at once on different devices; a third waits, naming the GPUs
    hold = ["sh", "-c", "echo CUDA=$CUDA_VISIBLE_DEVICES; sleep 4"]
    first, second = submit(c, _gpu_job(1, hold)), submit(c, _gpu_job(1, hold))
    eventually(lambda: all(job_on(c, 0, j)["status"] == "running" for j in (first, second)), 20, "both running")
    third = submit(c, _gpu_job(1, ["sh", "-c", "echo CUDA=$CUDA_VISIBLE_DEVICES"]))
    reason = eventually(lambda: job_on(c, 0, third)["pending_reason"], 10, "a pending reason")
    assert job_on(c, 0, third)["status"] == "pending"
    assert "GPU" in reason.get("resources", ""), reason
    assert "gpu: needs 1 GPU, 0 free" in reason["resources"] and "needs 1 GPU: has no GPUs" in str(reason), reason
    gpu_worker = _workers(c)["gpu"]
    assert gpu_worker["reserved"]["devices"] == [0, 1] and gpu_worker["free"]["devices"] == []
    seen = {final(c, j)["result"]["stdout_tail"].strip() for j in (first, second)}
    assert seen == {"CUDA=0", "CUDA=1"}, seen
    assert final(c, third)["status"] == "completed"

    # 48 GB per GPU on 24 GB devices: waits, saying so
    big = submit(c, _gpu_job(1, ["true"], gpu_memory_gb=48))
    reason = eventually(lambda: job_on(c, 0, big)["pending_reason"], 10, "a pending reason")
    assert "needs 1 GPU with 48 GB" in str(reason.get("no_worker_fits")), reason
    # a job that reserved no GPU sees none on the GPU worker
    plain = final(c, submit(c, {"type": "shell", "payload": {"argv": ["sh", "-c", "echo [$CUDA_VISIBLE_DEVICES]"]},
                                "required_tags": [], "requirements": {"hardware": ["cuda"]}}))
    assert "[]" in plain["result"]["stdout_tail"], plain


def _never_over(intervals: list[tuple[int, int, float]], limit: float) -> float:
    """The most reserved at once over [start, end) intervals of (start, end, amount)."""
    events = sorted([(s, a) for s, _, a in intervals] + [(e, -a) for _, e, a in intervals])
    top = now = 0.0
    for _, delta in events:  # at equal times an end (negative) sorts first: back-to-back is not overlap
        now += delta
        top = max(top, now)
    return top


def test_cpus_and_memory_never_oversubscribed_over_200_jobs(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(1)
    c.start_worker("w", capacity=8, extra=["--cpus", "4", "--memory-gb", "6", "--gpus", "none"])
    eventually(lambda: _workers(c).get("w", {}).get("cpus") == 4, 30, "worker registered with 4 CPUs")
    rng = random.Random(21)
    sizes = [(rng.randint(1, 4), rng.choice([0.5, 1.0, 2.0, 3.0])) for _ in range(200)]
    status, body = http("POST", c.nodes[0].url + "/api/jobs/batch", {"jobs": [
        {"type": "noop", "requirements": {"cpus": cpus, "memory_gb": mem}} for cpus, mem in sizes]})
    assert status == 201, body
    ids = body["job_ids"]
    jobs = [final(c, j, 60) for j in ids]
    assert all(j["status"] == "completed" for j in jobs)
    spans = [(j["attempts"][-1]["assigned_at_ms"], j["attempts"][-1]["ended_at_ms"], cpus, mem)
             for j, (cpus, mem) in zip(jobs, sizes)]
    assert _never_over([(s, e, float(cpus)) for s, e, cpus, _ in spans], 4) <= 4
    assert _never_over([(s, e, mem) for s, e, _, mem in spans], 6) <= 6 + 1e-9


def _hanging_smi(tmp: Path) -> tuple[str, Path]:
    """A PATH whose nvidia-smi never answers: a shell that records its pid and its child's, then
    waits on a `sleep` holding the pipe open (what a wedged driver looks like to the probe)."""
    pids = tmp / "probe.pids"
    script = f"""#!/bin/sh
echo $$ >> "{pids}"
sleep 3600 &
echo $! >> "{pids}"
wait
"""
    return _fake_path(tmp, script), pids


def _live(pids: list[int]) -> list[psutil.Process]:
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def test_a_hanging_nvidia_smi_costs_the_worker_its_probe_timeout_only(cluster_factory: Any, tmp_path: Path) -> None:
    c: Cluster = cluster_factory(1)
    c.leader()
    path, pid_file = _hanging_smi(tmp_path)
    probe_timeout_s = 2.0
    seen: dict[str, float] = {}

    def registered() -> bool:
        now = time.monotonic()
        for wid in _workers(c):
            seen.setdefault(wid, now)
        return {"hung", "plain"} <= set(seen)

    started = time.monotonic()  # both start together, so they compete for the same CPUs
    c.start_worker("plain", capacity=1)
    _start_worker_with_path(c, "hung", path, capacity=1, tags="hung",
                            extra=["--probe-timeout", str(probe_timeout_s)])
    try:
        eventually(registered, probe_timeout_s + 30, "both workers registered")
        hung_s, plain_s = seen["hung"] - started, seen["plain"] - started
        assert hung_s <= probe_timeout_s + max(plain_s, 1.0) + 2.0, (hung_s, plain_s)
        probed = [int(p) for p in pid_file.read_text().split()]
        assert len(probed) == 2  # the probe did run, and hung: the shell and its sleep
        eventually(lambda: not _live(probed), 5, "the probe's process group killed")

        hung = _workers(c)["hung"]
        assert hung["devices"] == [] and "cuda" not in hung["hardware"] and hung["cuda_compute"] == 0
        log_text = (c.root / "worker-hung.log").read_text()
        warnings = [line for line in log_text.splitlines() if "nvidia-smi" in line and "WARNING" in line]
        assert len(warnings) == 1 and f"did not answer within {probe_timeout_s:g}s" in warnings[0], warnings
        assert "Traceback" not in log_text

        job = final(c, submit(c, {"type": "shell", "payload": {"argv": ["sh", "-c", "echo cpu-ok"]},
                                  "required_tags": ["hung"], "requirements": {"cpus": 1}}))
        assert job["status"] == "completed" and job["attempts"][-1]["worker_id"] == "hung", job
        assert "cpu-ok" in job["result"]["stdout_tail"]
    finally:  # the probe ran in a session of its own, out of reach of the worker's group kill
        probed = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
        for proc in _live(probed):
            if proc.name() in ("sh", "sleep", "nvidia-smi"):
                proc.kill()
