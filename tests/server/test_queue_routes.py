"""Named queue routes over the real app and an in-process replica: what a listing shows, what a
submit asks of its queue (it exists; its priority when the job gives none), and the refusals."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.server.fake_replica import FakeReplica
from tests.server.test_routes import JOB, _register


async def _ok(r: Any, status: int = 200) -> Any:
    assert r.status == status, await r.text()
    return await r.json()


async def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    body = await r.json()
    assert r.status == status and body["error"]["code"] == code, body
    return dict(body["error"])


async def test_a_fresh_cluster_lists_default_with_its_implicit_settings(client: TestClient) -> None:
    answer = await _ok(await client.get("/api/queues"))
    assert answer["paused"] is False and answer["index"] >= 0
    assert answer["queues"] == [{"name": "default", "max_running": 0, "weight": 1, "priority": 0, "paused": False,
                                 "explicit": False, "created_at_ms": None, "ready": 0,
                                 "counts": {s: 0 for s in ("pending", "running", "completed", "failed", "cancelled",
                                                          "expired")}}]


async def test_create_list_update_pause_and_delete(client: TestClient, replica: FakeReplica) -> None:
    made = await _ok(await client.post("/api/queues", json={"name": "gpu", "max_running": 2, "weight": 3,
                                                             "priority": 7}), 201)
    assert made["already"] is False and made["queue"]["explicit"] is True and made["queue"]["weight"] == 3
    again = await _ok(await client.post("/api/queues", json={"name": "gpu", "max_running": 2, "weight": 3,
                                                              "priority": 7}))
    assert again["already"] is True
    await _error(await client.post("/api/queues", json={"name": "gpu", "weight": 1}), 409, "QUEUE_EXISTS")
    assert replica.state.cluster_version >= 5

    for _ in range(2):
        await _ok(await client.post("/api/jobs", json={**JOB, "queue": "gpu"}), 201)
    listing = await _ok(await client.get("/api/queues"))
    assert [q["name"] for q in listing["queues"]] == ["default", "gpu"]
    gpu = listing["queues"][1]
    assert gpu["counts"]["pending"] == 2 and gpu["ready"] == 2 and gpu["created_at_ms"] is not None

    updated = await _ok(await client.patch("/api/queues/gpu", json={"max_running": 0}))
    assert (updated["queue"]["max_running"], updated["queue"]["weight"], updated["queue"]["priority"]) == (0, 3, 7)
    assert (await _ok(await client.post("/api/queues/gpu/pause")))["paused"] is True
    assert (await _ok(await client.get("/api/queues/gpu")))["queue"]["paused"] is True
    assert (await _ok(await client.post("/api/queues/gpu/pause")))["already"] is True

    error = await _error(await client.delete("/api/queues/gpu"), 409, "QUEUE_NOT_EMPTY")
    assert error["detail"]["jobs"] == 2
    for job_id in list(replica.state.jobs):
        await _ok(await client.post(f"/api/jobs/{job_id}/cancel"))
    assert (await _ok(await client.delete("/api/queues/gpu")))["already"] is False
    listing = await _ok(await client.get("/api/queues"))  # its cancelled jobs keep it listed, implicit again
    assert [(q["name"], q["explicit"], q["counts"]["cancelled"]) for q in listing["queues"]] == [
        ("default", False, 0), ("gpu", False, 2)]
    await _error(await client.post("/api/jobs", json={**JOB, "queue": "gpu"}), 400, "UNKNOWN_QUEUE")


async def test_a_job_without_a_priority_gets_its_queues(client: TestClient, replica: FakeReplica) -> None:
    await _ok(await client.post("/api/queues", json={"name": "urgent", "priority": 50}), 201)
    await _ok(await client.patch("/api/queues/default", json={"priority": -5}))
    ids = {}
    for label, fields in (("urgent", {"queue": "urgent"}), ("own", {"queue": "urgent", "priority": 1}),
                          ("default", {}), ("explicit-default", {"queue": "default"})):
        ids[label] = (await _ok(await client.post("/api/jobs", json={**JOB, **fields}), 201))["job_id"]
    batch = await _ok(await client.post("/api/jobs/batch", json={"jobs": [{**JOB, "queue": "urgent"}, JOB]}), 201)
    flow = await _ok(await client.post("/api/jobs/batch", json={"group": "g1", "jobs": [
        {**JOB, "name": "a", "queue": "urgent"}, {**JOB, "name": "b", "depends_on": ["a"]}]}), 201)
    priority = {k: replica.state.jobs[v].spec.priority for k, v in ids.items()}
    assert priority == {"urgent": 50, "own": 1, "default": -5, "explicit-default": -5}
    assert [replica.state.jobs[j].spec.priority for j in batch["job_ids"]] == [50, -5]
    assert [replica.state.jobs[j].spec.priority for j in flow["job_ids"]] == [50, -5]
    job = (await _ok(await client.get(f"/api/jobs/{ids['urgent']}")))["job"]
    assert job["queue"] == "urgent" and job["priority"] == 50


async def test_an_unknown_queue_is_a_400_naming_the_field_and_the_known_queues(client: TestClient,
                                                                              replica: FakeReplica) -> None:
    await _ok(await client.post("/api/queues", json={"name": "cpu"}), 201)
    before = replica.state.digest()
    error = await _error(await client.post("/api/jobs", json={**JOB, "queue": "gpu"}), 400, "UNKNOWN_QUEUE")
    assert error["detail"]["field"] == "queue" and error["detail"]["known"] == ["cpu", "default"]
    assert "no queue gpu" in error["message"] and "cpu, default" in error["message"]
    error = await _error(await client.post("/api/jobs/batch", json={"jobs": [JOB, {**JOB, "queue": "gpu"}]}), 400,
                         "UNKNOWN_QUEUE")
    assert error["detail"]["field"] == "jobs[1].queue"
    error = await _error(await client.post("/api/schedules", json={"id": "s", "every": "1h", "job": {
        **JOB, "queue": "gpu"}}), 400, "UNKNOWN_QUEUE")
    assert error["detail"]["field"] == "job.queue"
    assert replica.state.digest() == before


async def test_bad_settings_name_the_field_and_propose_nothing(client: TestClient, replica: FakeReplica) -> None:
    before = (replica.state.digest(), replica.index)
    for body, field in (({"name": "q", "weight": 1001}, "weight"), ({"name": "q", "max_running": 1.5}, "max_running"),
                        ({"name": "q", "priority": None}, "priority"), ({"name": "-q"}, "name"),
                        ({"name": "q", "paused": True}, "paused")):
        error = await _error(await client.post("/api/queues", json=body), 400, "INVALID")
        assert error["detail"]["field"] == field and error["message"].startswith(f"{field}: "), error
    error = await _error(await client.patch("/api/queues/default", json={"weight": "3"}), 400, "INVALID")
    assert error["detail"]["field"] == "weight"
    assert (replica.state.digest(), replica.index) == before


async def test_a_paused_queue_is_a_pending_reason(client: TestClient, replica: FakeReplica) -> None:
    _register(replica)
    await _ok(await client.post("/api/queues", json={"name": "batch"}), 201)
    await _ok(await client.post("/api/queues/batch/pause"))
    job_id = (await _ok(await client.post("/api/jobs", json={**JOB, "queue": "batch"}), 201))["job_id"]
    job = (await _ok(await client.get(f"/api/jobs/{job_id}")))["job"]
    assert job["pending_reason"].get("queue_paused") == "batch", job["pending_reason"]


async def test_a_resubmit_keeps_its_job_when_the_queues_priority_changed_meanwhile(client: TestClient,
                                                                                  replica: FakeReplica) -> None:
    """The priority a job got from its queue is part of what a key, a named group and a schedule
    identify: a retry with the same body after the queue's priority changed is the same request."""
    await _ok(await client.post("/api/queues", json={"name": "urgent", "priority": 50}), 201)
    keyed = {**JOB, "queue": "urgent", "key": "k1"}
    first = await _ok(await client.post("/api/jobs", json=keyed), 201)
    delayed = {**JOB, "queue": "urgent", "key": "k2", "not_before": "2099-01-01T00:00:00Z"}
    first_delayed = await _ok(await client.post("/api/jobs", json=delayed), 201)
    group = {"group": "g1", "jobs": [{**JOB, "name": "a", "queue": "urgent"}, {**JOB, "name": "b", "priority": 3}]}
    first_group = await _ok(await client.post("/api/jobs/batch", json=group), 201)
    schedule = {"id": "s1", "every": "1h", "job": {**JOB, "queue": "urgent"}}
    await _ok(await client.post("/api/schedules", json=schedule), 201)

    await _ok(await client.patch("/api/queues/urgent", json={"priority": 5}))
    again = await _ok(await client.post("/api/jobs", json=keyed))
    assert again["job_id"] == first["job_id"] and again.get("already") is True
    again = await _ok(await client.post("/api/jobs", json=delayed))
    assert again["job_id"] == first_delayed["job_id"]
    again = await _ok(await client.post("/api/jobs/batch", json=group))
    assert again["job_ids"] == first_group["job_ids"] and again["already"] is True
    assert (await _ok(await client.post("/api/schedules", json=schedule)))["already"] is True
    assert replica.state.jobs[first["job_id"]].spec.priority == 50
    # another body is still another request, and a new job gets the queue's priority as it is now
    await _error(await client.post("/api/jobs", json={**keyed, "priority": 7}), 409, "KEY_REUSED")
    fresh = await _ok(await client.post("/api/jobs", json={**keyed, "key": "k3"}), 201)
    assert replica.state.jobs[fresh["job_id"]].spec.priority == 5


async def test_a_queue_deleted_between_the_check_and_the_apply_is_a_400(client: TestClient, replica: FakeReplica,
                                                                       monkeypatch: Any) -> None:
    """Apply refuses a job into a queue without a record too (a DeleteQueue applied first, or this
    replica's view lagging): the same 400 UNKNOWN_QUEUE as the API's own check, nothing created."""
    from haco.server import queue_specs

    await _ok(await client.post("/api/queues", json={"name": "gone"}), 201)
    await _ok(await client.delete("/api/queues/gone"))
    monkeypatch.setattr(queue_specs, "check_known", lambda *_: None)  # as if checked before the delete applied
    before = replica.state.digest()
    for path, body in (("/api/jobs", {**JOB, "queue": "gone"}),
                       ("/api/jobs/batch", {"jobs": [{**JOB, "queue": "gone"}, JOB]}),
                       ("/api/schedules", {"id": "s", "every": "1h", "job": {**JOB, "queue": "gone"}})):
        error = await _error(await client.post(path, json=body), 400, "UNKNOWN_QUEUE")
        assert error["detail"]["queue"] == "gone" and "no queue gone" in error["message"], error
    assert replica.state.digest() == before
