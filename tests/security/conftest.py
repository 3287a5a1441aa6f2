"""Fixtures for security tests: real clusters from tests/integration/cluster.py with auth and TLS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster

ClusterMaker = Callable[..., Cluster]


@pytest.fixture(scope="module")
def make_cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ClusterMaker]:
    """Module-scoped: make(auth=..., tls_dir=..., mtls=..., extra_env=...) starts a 3-replica cluster;
    every cluster made is stopped (by PID) at the end of the module, logs printed on failure."""
    made: list[Cluster] = []

    def make(size: int = 3, **kwargs: Any) -> Cluster:
        root = tmp_path_factory.mktemp("cluster")
        c = Cluster(root, size, **kwargs)
        made.append(c)
        c.start_all()
        return c
    yield make
    failed = any(getattr(item, "rep_call", None) is not None and item.rep_call.failed  # type: ignore[attr-defined]
                 for item in request.session.items if item.module is request.module)
    for c in made:
        c.stop()
        if failed:
            print(c.dump_logs())


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from haco.security.certs import init
    out = tmp_path_factory.mktemp("certs")
    init(out, ["127.0.0.1", "localhost"])
    return out


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
