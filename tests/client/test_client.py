"""HacoClient against scripted fake replicas: retries, failover, idempotency keys, typed errors."""

from __future__ import annotations

import inspect
import time

import pytest
from tests.client.client_fakes import FakeReplica, free_port, serve

from haco.client import BATCH_MAX, HacoClient, SyncClient, error_from_body
from haco.errors import (
    BadRequest, Conflict, HacoError, NotApplied, NotFound, OutcomeUnknown, PayloadTooLarge, Rejected,
    Unauthorized, Unreachable,
)

JOB = {"type": "shell", "payload": {"argv": ["echo", "hi"]}}


async def test_submit_retries_503_after_retry_after_with_the_same_key() -> None:
    fake = FakeReplica()
    fake.fail("submit", 503, "NOT_APPLIED", headers={"Retry-After": "0"})
    fake.fail("submit", 503, "NOT_APPLIED", headers={"Retry-After": "0"})
    with serve(fake) as urls:
        async with HacoClient(urls) as client:
            res = await client.submit(JOB)
    assert res.job_id == "job1" and not res.already
    assert len(fake.seen_keys) == 3 and len(set(fake.seen_keys)) == 1
    assert len(fake.jobs) == 1


async def test_retry_after_is_capped() -> None:
    fake = FakeReplica()
    fake.fail("submit", 503, "NOT_APPLIED", headers={"Retry-After": "30"})
    with serve(fake) as urls:
        async with HacoClient(urls, retry_after_max_s=0.1) as client:
            started = time.monotonic()
            await client.submit(JOB)
    assert time.monotonic() - started < 2


async def test_submit_retries_504_with_the_same_key_and_creates_one_job() -> None:
    fake = FakeReplica()
    fake.fail("submit", 504, "OUTCOME_UNKNOWN", apply_first=True)  # applied, but the answer was lost
    with serve(fake) as urls:
        async with HacoClient(urls) as client:
            res = await client.submit(JOB, key="k-1")
    assert fake.seen_keys == ["k-1", "k-1"]
    assert len(fake.jobs) == 1 and res.job_id == "job1" and res.already


async def test_connection_refused_moves_to_the_next_replica_and_sticks_there() -> None:
    fake = FakeReplica()
    with serve(fake) as urls:
        dead = f"http://127.0.0.1:{free_port()}"
        async with HacoClient([dead, *urls]) as client:
            await client.submit(JOB)
            await client.submit(JOB)
            assert client.urls[client._current] == urls[0]
    assert fake.requests == ["POST /api/jobs", "POST /api/jobs"]


async def test_follows_the_leader_hint() -> None:
    follower, leader = FakeReplica("r2", role="follower"), FakeReplica("r1")
    with serve(follower, leader) as (f_url, l_url):
        follower.fail("submit", 503, "NOT_LEADER", detail={"leader_url": l_url + "/"}, headers={"Retry-After": "0"})
        async with HacoClient([f_url]) as client:
            res = await client.submit(JOB)
    assert res.job_id == "job1" and len(leader.jobs) == 1 and not follower.jobs


async def test_not_ready_read_goes_to_another_replica() -> None:
    lagging, fresh = FakeReplica("r2"), FakeReplica("r1")
    fresh.add_job("j1", status="running")
    lagging.fail("get", 409, "NOT_READY")
    with serve(lagging, fresh) as urls:
        async with HacoClient(urls) as client:
            job = await client.get("j1", min_index=10)
    assert job["status"] == "running"


@pytest.mark.parametrize(("status", "code", "classes", "reject_code"), [
    (404, "UNKNOWN_JOB", (NotFound, Rejected), "UNKNOWN_JOB"),
    (409, "KEY_REUSED", (Conflict, Rejected), "KEY_REUSED"),
    (409, "JOB_FINAL", (Conflict, Rejected), "JOB_FINAL"),
    (400, "INVALID", (BadRequest, Rejected), "INVALID"),
    (400, "BAD_REQUEST", (BadRequest, Rejected), "BAD_REQUEST"),
    (404, "NOT_FOUND", (NotFound,), "NOT_FOUND"),
    (503, "NOT_READY", (Rejected,), "NOT_READY"),
    (413, "PAYLOAD_TOO_LARGE", (PayloadTooLarge,), None),
    (401, "UNAUTHORIZED", (Unauthorized,), None),
    (503, "NOT_APPLIED", (NotApplied,), None),
    (504, "OUTCOME_UNKNOWN", (OutcomeUnknown,), None),
    (409, "SOMETHING_NEW", (Conflict, Rejected), "SOMETHING_NEW"),
])
def test_error_body_becomes_its_typed_exception(status: int, code: str, classes: tuple[type, ...],
                                                reject_code: str | None) -> None:
    exc = error_from_body(status, {"error": {"code": code, "message": "m", "detail": {"x": 1}}}, url="http://r")
    assert isinstance(exc, classes)
    assert exc.message == "m" and exc.detail == {"x": 1, "url": "http://r"}
    assert getattr(exc, "reject_code", None) == reject_code


def test_error_without_a_json_body_still_has_a_message() -> None:
    exc = error_from_body(502, "<html>bad gateway</html>")
    assert isinstance(exc, HacoError) and "bad gateway" in exc.message


async def test_typed_errors_reach_the_caller_without_retry() -> None:
    fake = FakeReplica()
    fake.add_job("done", status="completed")
    with serve(fake) as urls:
        async with HacoClient(urls) as client:
            with pytest.raises(NotFound) as missing:
                await client.get("nope")
            with pytest.raises(Conflict) as final:
                await client.cancel("done")
            await client.submit(JOB, key="k")
            with pytest.raises(Rejected) as reused:
                await client.submit({**JOB, "priority": 5}, key="k")
    assert getattr(missing.value, "reject_code") == "UNKNOWN_JOB"
    assert getattr(final.value, "reject_code") == "JOB_FINAL"
    assert reused.value.reject_code == "KEY_REUSED"
    assert fake.requests.count("GET /api/jobs/nope") == 1


async def test_deadline_exhausted_raises_the_last_error() -> None:
    fake = FakeReplica()
    for _ in range(100):
        fake.fail("submit", 503, "NOT_APPLIED", headers={"Retry-After": "0.05"})
    with serve(fake) as urls:
        async with HacoClient(urls, deadline_s=0.5) as client:
            started = time.monotonic()
            with pytest.raises(NotApplied):
                await client.submit(JOB)
    assert 0.4 < time.monotonic() - started < 2
    assert len(set(fake.seen_keys)) == 1 and len(fake.seen_keys) > 3


async def test_no_replica_reachable_raises_unreachable() -> None:
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    async with HacoClient(urls, deadline_s=0.5) as client:
        with pytest.raises(Unreachable) as info:
            await client.queue_stats()
    assert "cannot connect" in info.value.message


async def test_submit_many_sends_batches_of_at_most_1000_each_keyed() -> None:
    fake = FakeReplica()
    with serve(fake) as urls:
        async with HacoClient(urls) as client:
            ids = await client.submit_many([JOB] * (2 * BATCH_MAX + 5) + [{**JOB, "key": "mine"}])
    assert len(ids) == 2 * BATCH_MAX + 6 and len(set(ids)) == len(ids)
    assert fake.requests.count("POST /api/jobs/batch") == 3
    assert len(set(fake.seen_keys)) == len(ids) and "mine" in fake.seen_keys


async def test_wait_long_polls_until_final_and_reports_changes() -> None:
    fake = FakeReplica()
    fake.add_job("j1")
    fake.steps["j1"] = [{"status": "pending"}, {"status": "running", "attempt": 1, "worker_id": "w1"},
                        {"status": "running", "attempt": 1}, {"status": "completed", "result": {"stdout": "hi\n"}}]
    seen: list[str] = []
    with serve(fake) as urls:
        async with HacoClient(urls) as client:
            job = await client.wait("j1", timeout_s=10, on_change=lambda j: seen.append(j["status"]))
    assert job["status"] == "completed" and seen == ["pending", "running", "completed"]


async def test_wait_times_out() -> None:
    fake = FakeReplica()
    fake.add_job("j1")
    with serve(fake) as urls:
        async with HacoClient(urls) as client:
            with pytest.raises(TimeoutError):
                await client.wait("j1", timeout_s=0.2, poll_s=0.05)


async def test_jobs_follows_the_cursor_up_to_the_limit() -> None:
    fake = FakeReplica()
    for n in range(5):
        fake.add_job(f"j{n}")
    with serve(fake) as urls:
        async with HacoClient(urls) as client:
            assert [j["job_id"] for j in await client.jobs(limit=4)] == ["j0", "j1", "j2", "j3"]
            assert len(await client.jobs()) == 5


async def test_status_gathers_every_replica_and_marks_the_unreachable() -> None:
    fake = FakeReplica()
    with serve(fake) as urls:
        dead = f"http://127.0.0.1:{free_port()}"
        async with HacoClient([*urls, dead]) as client:
            replicas = await client.status()
    assert [r.reachable for r in replicas] == [True, False]
    assert replicas[0].info and replicas[0].info["role"] == "leader"
    assert replicas[1].error and dead in replicas[1].error


def test_sync_client_has_every_public_call_of_the_async_client() -> None:
    public = {n for n, m in inspect.getmembers(HacoClient, inspect.isfunction) if not n.startswith("_")}
    assert public - {n for n in dir(SyncClient) if not n.startswith("_")} == set()
    assert {"worker", "remove_worker", "cluster", "health", "logs", "status"} <= public


def test_sync_client_for_scripts() -> None:
    fake = FakeReplica()
    with serve(fake) as urls, SyncClient(urls) as client:
        res = client.submit(JOB)
        assert client.get(res.job_id)["status"] == "pending"
        assert client.queue_stats()["counts"] == {"pending": 1}
        assert client.cancel(res.job_id)["job_id"] == res.job_id
