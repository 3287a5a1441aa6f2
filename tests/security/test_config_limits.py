"""Auth-on-by-default config rules, the coordinator's refusal to start open, and the hub's guards."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest

from haco.config import NodeConfig
from haco.errors import ConfigError
from haco.server.hub_guards import FRAME_BURST_MAX, RESULT_BYTES_MAX, FrameBudget, bounded

BASE = {"HACO_ID": "r1", "HACO_RAFT_ADDR": "127.0.0.1:7101", "HACO_RAFT_PASSWORD": "pw"}


def test_a_token_secret_or_an_explicit_open_api_on_loopback_is_required() -> None:
    with pytest.raises(ConfigError, match="token secret"):
        NodeConfig.from_env(BASE)
    assert NodeConfig.from_env({**BASE, "HACO_INSECURE_OPEN_API": "1"}).token_secret is None
    for host in ("0.0.0.0", "10.1.2.3"):
        with pytest.raises(ConfigError, match="loopback"):
            NodeConfig.from_env({**BASE, "HACO_INSECURE_OPEN_API": "1", "HACO_HTTP_ADDR": f"{host}:7001"})
    cfg = NodeConfig.from_env({**BASE, "HACO_TOKEN_SECRET": "s" * 32, "HACO_HTTP_ADDR": "0.0.0.0:7001"})
    assert cfg.token_secret == "s" * 32
    with pytest.raises(ConfigError, match="16"):
        NodeConfig.from_env({**BASE, "HACO_TOKEN_SECRET": "short"})


def test_tls_settings_must_be_complete() -> None:
    ok = {**BASE, "HACO_TOKEN_SECRET": "s" * 32}
    with pytest.raises(ConfigError, match="both"):
        NodeConfig.from_env({**ok, "HACO_TLS_CERT": "c.pem"})
    with pytest.raises(ConfigError, match="client-ca"):
        NodeConfig.from_env({**ok, "HACO_TLS_CERT": "c", "HACO_TLS_KEY": "k", "HACO_REQUIRE_CLIENT_CERT": "workers"})
    cfg = NodeConfig.from_env({**ok, "HACO_TLS_CERT": "c", "HACO_TLS_KEY": "k"})
    assert cfg.api_url.startswith("https://")


def test_coordinator_without_a_secret_exits_64_with_a_clear_message(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "HACO_RAFT_PASSWORD": "pw"}
    proc = subprocess.run([sys.executable, "-m", "haco.server.main", "--id", "r1", "--raft", "127.0.0.1:1",
                           "--http", "127.0.0.1:1"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 64 and "--insecure-open-api" in proc.stderr and "Traceback" not in proc.stderr


def test_frame_budget_allows_a_burst_then_refuses() -> None:
    budget = FrameBudget()
    assert all(budget.take() for _ in range(FRAME_BURST_MAX - 10))  # a few tokens refill meanwhile
    assert not all(budget.take() for _ in range(1000))


def test_an_outsized_result_becomes_a_marker() -> None:
    small = bounded({"ok": 1}, RESULT_BYTES_MAX)
    assert msgpack.unpackb(small) == {"ok": 1}
    big = msgpack.unpackb(bounded("x" * (RESULT_BYTES_MAX + 1), RESULT_BYTES_MAX))
    assert "too large" in big["error"]
