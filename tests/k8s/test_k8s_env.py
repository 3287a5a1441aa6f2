"""The peer list a StatefulSet pod derives from its environment (haco/k8s_env.py via NodeConfig.from_env)."""

from __future__ import annotations

import pytest

from haco.config import NodeConfig
from haco.errors import ConfigError


def pod_env(pod: str, replicas: int, **extra: str) -> dict[str, str]:
    return {"HOSTNAME": pod, "HACO_REPLICAS": str(replicas), "HACO_K8S_SERVICE": "haco-peers",
            "POD_NAMESPACE": "jobs", "HACO_RAFT_PASSWORD": "s3cret", "HACO_TOKEN_SECRET": "k8s-token-secret-32chars",
            **extra}


@pytest.mark.parametrize("replicas", [3, 5])
def test_every_pod_derives_the_same_members_and_excludes_itself(replicas: int) -> None:
    host = "haco-{}.haco-peers.jobs.svc.cluster.local"
    everyone = {(f"haco-{i}", f"{host.format(i)}:7100", f"http://{host.format(i)}:7001") for i in range(replicas)}
    for ordinal in range(replicas):
        cfg = NodeConfig.from_env(pod_env(f"haco-{ordinal}", replicas))
        me = (cfg.id, cfg.raft_addr, cfg.api_url)
        assert me == (f"haco-{ordinal}", f"{host.format(ordinal)}:7100", f"http://{host.format(ordinal)}:7001")
        peers = {(p.id, p.raft_addr, p.api_url) for p in cfg.peers}
        assert len(cfg.peers) == replicas - 1 and me not in peers
        assert peers | {me} == everyone
        assert [p.id for p in cfg.peers] == [f"haco-{i}" for i in range(replicas) if i != ordinal]
        assert (cfg.raft_bind, cfg.http_host, cfg.http_port) == ("0.0.0.0:7100", "0.0.0.0", 7001)


def test_ports_domain_scheme_and_pod_name_variable_are_honoured() -> None:
    env = pod_env("ignored-7", 5, HACO_POD_NAME="coord-4", HACO_RAFT_PORT="9100", HACO_HTTP_PORT="9001",
                  HACO_K8S_CLUSTER_DOMAIN="example.internal.", HACO_API_SCHEME="https", HACO_K8S_NAMESPACE="ops")
    cfg = NodeConfig.from_env(env)
    assert cfg.id == "coord-4"
    assert cfg.raft_addr == "coord-4.haco-peers.ops.svc.example.internal:9100"
    assert cfg.api_url == "https://coord-4.haco-peers.ops.svc.example.internal:9001"
    assert cfg.peers[0].raft_addr == "coord-0.haco-peers.ops.svc.example.internal:9100"
    assert cfg.raft_bind == "0.0.0.0:9100" and cfg.http_port == 9001


def test_explicit_haco_variables_win_over_the_derivation() -> None:
    env = pod_env("haco-1", 3, HACO_ID="custom", HACO_HTTP_ADDR="127.0.0.5:8000", HACO_RAFT_BIND="127.0.0.5:7100")
    cfg = NodeConfig.from_env(env)
    assert (cfg.id, cfg.http_host, cfg.http_port, cfg.raft_bind) == ("custom", "127.0.0.5", 8000, "127.0.0.5:7100")
    assert cfg.raft_addr == "haco-1.haco-peers.jobs.svc.cluster.local:7100"


def test_without_the_service_variable_nothing_is_derived() -> None:
    with pytest.raises(ConfigError, match="needs an id"):
        NodeConfig.from_env({"HOSTNAME": "haco-0", "HACO_RAFT_PASSWORD": "x"})


@pytest.mark.parametrize(("change", "message"), [
    ({"HOSTNAME": "haco"}, "must look like <statefulset>-<ordinal>"),
    ({"HOSTNAME": "haco-01"}, "must look like"),
    ({"HOSTNAME": "Haco-1"}, "must look like"),
    ({"HOSTNAME": "haco-15"}, "at most 15 replicas"),
    ({"HACO_REPLICAS": "zero"}, "HACO_REPLICAS must be an integer"),
    ({"HACO_REPLICAS": "0"}, "between 1 and 15"),
    ({"HACO_RAFT_PORT": "70000"}, "HACO_RAFT_PORT must be between"),
    ({"POD_NAMESPACE": "Bad_NS"}, "not a DNS label"),
    ({"HACO_API_SCHEME": "ftp"}, "http or https"),
])
def test_a_wrong_environment_names_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NodeConfig.from_env({**pod_env("haco-0", 3), **change})


def test_dns_cache_is_a_few_seconds_and_tunable() -> None:
    assert NodeConfig.from_env(pod_env("haco-0", 3)).raft.dns_cache_s <= 5.0
    assert NodeConfig.from_env(pod_env("haco-0", 3, HACO_DNS_CACHE_S="1.5")).raft.dns_cache_s == 1.5


def test_a_pod_past_the_initial_replicas_joins_through_them() -> None:
    """Scaled up: haco-3 of a cluster created with 3 has no static peers and joins through haco-0..2."""
    cfg = NodeConfig.from_env(pod_env("haco-3", 3))
    assert cfg.id == "haco-3" and cfg.peers == ()
    assert [u.split("//")[1].split(".")[0] for u in cfg.join] == ["haco-0", "haco-1", "haco-2"]
    assert NodeConfig.from_env(pod_env("haco-2", 3)).join == ()
