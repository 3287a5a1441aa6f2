"""Route tests over the real app and an in-process replica (tests/server/fake_replica.py): no Raft,
no processes; aiohttp's test server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from haco.config import NodeConfig
from haco.results.store import ResultsStore
from haco.server.app import build_app
from tests.server.fake_replica import FakeReplica


@pytest.fixture
def replica(tmp_path: Path) -> FakeReplica:
    cfg = NodeConfig(id="r1", raft_addr="127.0.0.1:1", api_url="http://127.0.0.1:1", data_dir=tmp_path,
                     insecure_open_api=True)
    return FakeReplica(cfg)


@pytest.fixture
async def client(replica: FakeReplica, tmp_path: Path) -> AsyncIterator[TestClient]:
    results = ResultsStore.open(tmp_path / "results.duckdb")
    app = build_app(replica.cfg, replica, results)  # type: ignore[arg-type]
    # no scheduler loop: the state changes only through the requests a test makes
    app.cleanup_ctx[:] = [ctx for ctx in app.cleanup_ctx if getattr(ctx, "__name__", "") != "_scheduler_ctx"]
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c
    results.close()
