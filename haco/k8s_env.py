"""A replica's identity and peers, derived from a Kubernetes StatefulSet's environment. A leaf module.

A StatefulSet pod `haco-2` in namespace `jobs`, governed by the headless Service `haco-peers`, has
the stable DNS name `haco-2.haco-peers.jobs.svc.cluster.local`. Every replica derives the same
peer list from the same inputs, so the addresses pysyncobj announces agree on every pod:

| variable | meaning | default |
|---|---|---|
| `HACO_K8S_SERVICE` | the headless Service; setting it turns the derivation on | (off) |
| `HACO_POD_NAME`, else `HOSTNAME` | this pod's name, `<statefulset>-<ordinal>` | required |
| `HACO_REPLICAS` | the replicas the cluster was created with (ordinals 0..N-1) | 3 |
| `HACO_K8S_NAMESPACE`, else `POD_NAMESPACE` | the namespace | `default` |
| `HACO_K8S_CLUSTER_DOMAIN` | the cluster's DNS domain | `cluster.local` |
| `HACO_RAFT_PORT`, `HACO_HTTP_PORT` | container ports, the same on every pod | 7100, 7001 |
| `HACO_API_SCHEME` | `https` when the API serves TLS | `http` |

A pod whose ordinal is N or more (the StatefulSet scaled up) is not one of the initial members: it
starts with no peers and joins the running cluster through the initial members' API URLs (`--join`,
haco/server/join.py), as a learner first, then a voter. docs/operations.md has the procedure.

Raft and HTTP listen on all interfaces (`0.0.0.0`): the pod's DNS record may appear a moment
after the container starts, and binding must not wait for it. Explicit `HACO_ID`, `HACO_PEERS`,
... still win over what is derived here (see `NodeConfig.from_env`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from haco.errors import ConfigError

_POD = re.compile(r"^(?P<set>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<ordinal>0|[1-9][0-9]*)$")
REPLICAS_MAX = 15  #: more voters than this only slows Raft down


@dataclass(frozen=True, slots=True)
class Member:
    id: str  #: the pod name, `haco-2`
    raft_addr: str  #: `haco-2.haco-peers.jobs.svc.cluster.local:7100`
    api_url: str  #: `http://haco-2.haco-peers.jobs.svc.cluster.local:7001`


@dataclass(frozen=True, slots=True)
class StatefulSetIdentity:
    me: Member
    peers: tuple[Member, ...]  #: every other replica, by ordinal
    raft_bind: str  #: `0.0.0.0:7100`
    http_host: str
    http_port: int
    join: tuple[str, ...] = ()  #: a pod added by scaling up: the initial members' API URLs to join through


def enabled(env: Mapping[str, str]) -> bool:
    return bool(env.get("HACO_K8S_SERVICE", "").strip())


def derive(env: Mapping[str, str]) -> StatefulSetIdentity:
    """This pod's identity and its peers. Raises ConfigError naming the variable that is wrong."""
    pod = (env.get("HACO_POD_NAME") or env.get("HOSTNAME") or "").strip()
    match = _POD.match(pod)
    if match is None:
        raise ConfigError(f"pod name {pod!r} (HACO_POD_NAME or HOSTNAME) must look like <statefulset>-<ordinal>, "
                          "e.g. haco-0")
    name, ordinal = match["set"], int(match["ordinal"])
    replicas = _int(env, "HACO_REPLICAS", 3, 1, REPLICAS_MAX)
    if ordinal >= REPLICAS_MAX:
        raise ConfigError(f"pod {pod} has ordinal {ordinal}; at most {REPLICAS_MAX} replicas")
    service = env["HACO_K8S_SERVICE"].strip()
    namespace = (env.get("HACO_K8S_NAMESPACE") or env.get("POD_NAMESPACE") or "default").strip()
    domain = (env.get("HACO_K8S_CLUSTER_DOMAIN") or "cluster.local").strip().strip(".")
    for label, value in (("HACO_K8S_SERVICE", service), ("namespace", namespace)):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value):
            raise ConfigError(f"{label} {value!r} is not a DNS label")
    raft_port = _int(env, "HACO_RAFT_PORT", 7100, 1, 65535)
    http_port = _int(env, "HACO_HTTP_PORT", 7001, 1, 65535)
    scheme = (env.get("HACO_API_SCHEME") or "http").strip()
    if scheme not in ("http", "https"):
        raise ConfigError(f"HACO_API_SCHEME must be http or https, not {scheme!r}")

    def member(i: int) -> Member:
        host = f"{name}-{i}.{service}.{namespace}.svc.{domain}"
        return Member(f"{name}-{i}", f"{host}:{raft_port}", f"{scheme}://{host}:{http_port}")
    initial = tuple(member(i) for i in range(replicas))
    if ordinal >= replicas:  # added by scaling up: no static peers, join the running cluster
        return StatefulSetIdentity(me=member(ordinal), peers=(), raft_bind=f"0.0.0.0:{raft_port}", http_host="0.0.0.0",
                                   http_port=http_port, join=tuple(m.api_url for m in initial))
    return StatefulSetIdentity(me=member(ordinal), peers=tuple(m for m in initial if m.id != member(ordinal).id),
                               raft_bind=f"0.0.0.0:{raft_port}", http_host="0.0.0.0", http_port=http_port)


def _int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    text = env.get(key, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{key} must be an integer, not {text!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{key} must be between {lo} and {hi}, not {value}")
    return value
