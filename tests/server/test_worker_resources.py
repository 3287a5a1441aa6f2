"""GET /api/workers and /api/workers/{id}: each worker's reserved and free CPUs, memory and devices,
read from the applied state under the state lock, off the event loop (docs/resources.md)."""

from __future__ import annotations

import asyncio
import dataclasses

import jsonschema
from aiohttp.test_utils import TestClient

from raft_state import AssignJobs, Assignment, SetClusterVersion
from raft_state.records import Device

from haco.server.openapi_schemas import WORKER
from tests.raft_state.state_helpers import register, spec, submit
from tests.server.fake_replica import FakeReplica


def _gpu_worker_running_one_job(replica: FakeReplica) -> None:
    replica._apply(SetClusterVersion(0, 4))
    devices = tuple(Device(kind="cuda", index=i, model="NVIDIA A10G", memory_gb=24.0, compute=8.6) for i in (0, 1))
    replica._apply(dataclasses.replace(register("w1", capacity=4, cpus=4, memory_gb=16.0), devices=devices))
    replica._apply(submit("j1", spec(cpus=3).evolve(memory_gb=2.5, gpus=1)))
    replica._apply(AssignJobs(0, (Assignment("j1", "w1", 1, (1,)),)))


async def test_a_running_job_shows_as_reserved_and_the_rest_as_free(client: TestClient,
                                                                   replica: FakeReplica) -> None:
    _gpu_worker_running_one_job(replica)
    listed = (await (await client.get("/api/workers")).json())["workers"][0]
    one = (await (await client.get("/api/workers/w1")).json())["worker"]
    for worker in (listed, one):
        jsonschema.validate(worker, WORKER)
        assert worker["reserved"] == {"cpus": 3, "memory_gb": 2.5, "devices": [1]}
        assert worker["free"] == {"cpus": 1, "memory_gb": 13.5, "devices": [0]}
        assert (worker["cpus"], worker["memory_gb"], len(worker["devices"])) == (4, 16.0, 2)
        assert worker["held"] == {"j1": [1]}


async def test_the_table_waits_for_the_state_lock_without_blocking_the_loop(client: TestClient,
                                                                           replica: FakeReplica) -> None:
    _gpu_worker_running_one_job(replica)
    replica.state_lock.acquire()  # as the tick thread does while it applies an entry
    try:
        pending = asyncio.ensure_future(client.get("/api/workers"))
        await asyncio.sleep(0.2)
        assert not pending.done()
        health = await client.get("/api/health")  # the loop still serves
        assert health.status == 200
    finally:
        replica.state_lock.release()
    answer = await asyncio.wait_for(pending, 5)
    assert (await answer.json())["workers"][0]["reserved"]["devices"] == [1]
