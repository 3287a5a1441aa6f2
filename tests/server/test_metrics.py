"""`GET /metrics` over the real app and an in-process replica: the per-queue series read the
state's queue records and counts, and their label set stays bounded whatever names jobs carry."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from raft_state import SetClusterVersion
from raft_state.queue_commands import CreateQueue, SetQueuePaused
from haco.server import metrics
from tests.raft_state.state_helpers import assign, complete, register, spec, submit
from tests.server.fake_replica import FakeReplica

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(client: TestClient) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _v(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _queues_of(samples: Samples, name: str) -> set[str]:
    return {dict(labels)["queue"] for n, labels in samples if n == name}


def _fill(replica: FakeReplica) -> None:
    """Queue `batch` (max 2 running, weight 3, paused after one job started), jobs in `default`
    and in `legacy`, a name without a record (given before version 5, when any name was a queue)."""
    replica._apply(SetClusterVersion(0, 4))
    replica._apply(submit("l0", spec().evolve(queue="legacy"), at_ms=2))
    for cmd in (SetClusterVersion(0, 5), CreateQueue(at_ms=1, name="batch", max_running=2, weight=3, priority=0),
                register("w1", capacity=4)):
        replica._apply(cmd)
    for i in range(3):
        replica._apply(submit(f"b{i}", spec().evolve(queue="batch"), at_ms=2))
    replica._apply(submit("d0", at_ms=2))
    replica._apply(submit("d1", spec(required_tags=("gpu",)), at_ms=2))
    for job_id in ("b0", "d0"):
        replica._apply(assign(job_id, "w1", 1, at_ms=3))
    replica._apply(complete("d0", 1, "w1", at_ms=4))
    replica._apply(SetQueuePaused(5, "batch", True))


async def test_queue_series_by_name_and_status(client: TestClient, replica: FakeReplica) -> None:
    _fill(replica)
    s = await _scrape(client)
    assert _v(s, "haco_queue_jobs", queue="batch", state="running") == 1
    assert _v(s, "haco_queue_jobs", queue="batch", state="pending") == 2
    assert _v(s, "haco_queue_jobs", queue="default", state="completed") == 1
    assert _v(s, "haco_queue_jobs", queue="default", state="pending") == 1
    assert _v(s, "haco_queue_jobs", queue="legacy", state="pending") == 1
    assert _v(s, "haco_queue_jobs", queue="legacy", state="failed") == 0  # every status, so series never vanish
    assert _v(s, "haco_queue_jobs_ready", queue="batch") == 2  # paused: ready still counts what waits
    assert _v(s, "haco_queue_jobs_ready", queue="default") == 1  # d1: no worker has a GPU, but it is runnable
    assert _v(s, "haco_queue_max_running", queue="batch") == 2
    assert _v(s, "haco_queue_max_running", queue="default") == 0
    assert _v(s, "haco_queue_weight", queue="batch") == 3 and _v(s, "haco_queue_weight", queue="legacy") == 1
    assert _v(s, "haco_queue_is_paused", queue="batch") == 1 and _v(s, "haco_queue_is_paused", queue="default") == 0
    assert _v(s, "haco_queue_paused") == 0  # the cluster-wide pause is its own series
    assert sum(v for (n, _), v in s.items() if n == "haco_queue_jobs") == len(replica.state.jobs)

    replica._apply(SetQueuePaused(6, "batch", False))
    replica._apply(complete("b0", 1, "w1", at_ms=7))
    s = await _scrape(client)
    assert _v(s, "haco_queue_is_paused", queue="batch") == 0
    assert _v(s, "haco_queue_jobs", queue="batch", state="completed") == 1
    assert _v(s, "haco_queue_jobs", queue="batch", state="running") == 0


async def test_names_past_the_bound_are_summed_as_other(client: TestClient, replica: FakeReplica,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "IMPLICIT_QUEUES_MAX", 2)
    replica._apply(SetClusterVersion(0, 4))  # names from before queue records: any name a job carries
    for i, name in enumerate(["n1", "n2", "n2", "n3", "n3", "n3", "n4"]):
        replica._apply(submit(f"j{i}", spec().evolve(queue=name), at_ms=2))
    replica._apply(SetClusterVersion(0, 5))
    replica._apply(CreateQueue(at_ms=1, name="zz-explicit", max_running=0, weight=1, priority=0))
    s = await _scrape(client)
    assert _queues_of(s, "haco_queue_jobs") == {"default", "zz-explicit", "n3", "n2", "(other)"}  # most jobs first
    assert _v(s, "haco_queue_jobs", queue="(other)", state="pending") == 2  # n1 and n4
    assert _v(s, "haco_queue_jobs_ready", queue="(other)") == 2
    assert _queues_of(s, "haco_queue_max_running") == {"default", "zz-explicit", "n3", "n2"}
