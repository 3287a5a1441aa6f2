"""`GET /api/dashboard` over the real app and an in-process replica: the named queues it lists
for the page, with their settings and counts, bounded like /metrics."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from raft_state import SetClusterVersion
from raft_state.queue_commands import CreateQueue, SetQueuePaused
from haco.server import dashboard
from tests.raft_state.state_helpers import assign, register, spec, submit
from tests.server.fake_replica import FakeReplica


async def _dashboard(client: TestClient) -> dict[str, object]:
    resp = await client.get("/api/dashboard")
    assert resp.status == 200
    body: dict[str, object] = await resp.json()
    return body


async def test_named_queues_with_settings_and_counts(client: TestClient, replica: FakeReplica) -> None:
    for cmd in (SetClusterVersion(0, 5), CreateQueue(at_ms=7, name="nightly", max_running=3, weight=2, priority=4),
                register("w1", capacity=2), submit("n0", spec().evolve(queue="nightly")),
                submit("n1", spec().evolve(queue="nightly")), submit("d0"), assign("n0", "w1", 1),
                SetQueuePaused(8, "nightly", True)):
        replica._apply(cmd)
    d = await _dashboard(client)
    assert d["queues"] == [
        {"name": "default", "max_running": 0, "weight": 1, "priority": 0, "paused": False, "explicit": False,
         "created_at_ms": None, "counts": {"pending": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 0,
                                           "expired": 0}, "ready": 1},
        {"name": "nightly", "max_running": 3, "weight": 2, "priority": 4, "paused": True, "explicit": True,
         "created_at_ms": 7, "counts": {"pending": 1, "running": 1, "completed": 0, "failed": 0, "cancelled": 0,
                                        "expired": 0}, "ready": 1}]
    assert d["queues_other"] is None
    assert isinstance(d["actions"], dict) and "queue_pause" in d["actions"]


async def test_implicit_names_past_the_bound_are_summed(client: TestClient, replica: FakeReplica,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "IMPLICIT_QUEUES_SHOWN", 1)
    replica._apply(SetClusterVersion(0, 4))  # names from before queue records: any name a job carries
    for i, name in enumerate(["old-a", "old-b", "old-b", "old-c"]):
        replica._apply(submit(f"j{i}", spec().evolve(queue=name)))
    d = await _dashboard(client)
    assert [q["name"] for q in d["queues"]] == ["default", "old-b"]  # type: ignore[attr-defined, index]
    other = d["queues_other"]
    assert isinstance(other, dict) and other["name"] == "(other)" and other["counts"]["pending"] == 2
    assert other["ready"] == 2 and other["explicit"] is False
