"""The client's named-queue calls against the real routes: what each returns, the typed errors
it raises, and SyncClient's blocking twins."""

from __future__ import annotations

import pytest

from haco.client import HacoClient, SyncClient
from haco.errors import RejectedBadRequest, RejectedConflict, RejectedNotFound
from tests.client.app_server import serve_app

JOB = {"type": "noop", "payload": {}}


async def test_create_list_update_pause_resume_delete() -> None:
    with serve_app() as (url, replica):
        async with HacoClient(url, deadline_s=5) as c:
            made = await c.create_queue("gpu", max_running=2, weight=3, priority=4)
            assert made["already"] is False and made["queue"]["max_running"] == 2
            assert (await c.create_queue("gpu", max_running=2, weight=3, priority=4))["already"] is True
            with pytest.raises(RejectedConflict) as exists:
                await c.create_queue("gpu")
            assert exists.value.reject_code == "QUEUE_EXISTS"
            assert [q["name"] for q in await c.queues()] == ["default", "gpu"]
            updated = await c.update_queue("gpu", weight=5)
            assert (updated["queue"]["weight"], updated["queue"]["max_running"]) == (5, 2)
            assert (await c.pause_queue("gpu"))["paused"] is True
            assert (await c.queue("gpu"))["paused"] is True
            assert (await c.resume_queue("gpu"))["paused"] is False
            sub = await c.submit({**JOB, "queue": "gpu"})
            assert replica.state.jobs[sub.job_id].spec.priority == 4
            with pytest.raises(RejectedConflict) as busy:
                await c.delete_queue("gpu")
            assert busy.value.reject_code == "QUEUE_NOT_EMPTY"
            await c.cancel(sub.job_id)
            assert (await c.delete_queue("gpu"))["already"] is False
            assert (await c.queue("gpu"))["explicit"] is False  # its cancelled job keeps it listed


async def test_refusals_are_typed() -> None:
    with serve_app() as (url, _):
        async with HacoClient(url, deadline_s=5) as c:
            with pytest.raises(RejectedNotFound) as missing:
                await c.queue("nosuch")
            assert missing.value.reject_code == "UNKNOWN_QUEUE"
            with pytest.raises(RejectedNotFound):
                await c.update_queue("nosuch", weight=2)
            with pytest.raises(RejectedBadRequest) as bad:
                await c.create_queue("q", weight=0)
            assert bad.value.detail["field"] == "weight"
            with pytest.raises(RejectedBadRequest) as unknown:
                await c.submit({**JOB, "queue": "nosuch"})
            assert unknown.value.reject_code == "UNKNOWN_QUEUE" and unknown.value.detail["field"] == "queue"
            with pytest.raises(RejectedBadRequest) as default:
                await c.delete_queue("default")
            assert default.value.reject_code == "INVALID"


def test_sync_client_has_the_queue_calls() -> None:
    with serve_app() as (url, _), SyncClient(url, deadline_s=5) as c:
        c.create_queue("batch", weight=2)
        assert [q["weight"] for q in c.queues() if q["name"] == "batch"] == [2]
        assert c.pause_queue("batch")["paused"] is True
        assert c.delete_queue("batch")["name"] == "batch"
