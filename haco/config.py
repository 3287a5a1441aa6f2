"""Replica configuration: frozen dataclasses with every default in one place. A leaf module.

`NodeConfig.from_env(environ)` reads `HACO_*` variables from the mapping it is given (tests pass
a dict); the CLI overrides with flags; `validate()` raises ConfigError naming the field.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from haco import k8s_env
from haco.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Peer:
    id: str
    raft_addr: str  #: host:port of its Raft port
    api_url: str  #: base URL of its HTTP API

    @classmethod
    def parse(cls, text: str) -> Peer:
        """`ID=HOST:PORT=URL`."""
        parts = text.split("=", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"peer {text!r} must look like r2=127.0.0.1:7102=http://127.0.0.1:7002")
        return cls(parts[0], parts[1], parts[2].rstrip("/"))


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftConfig:
    election_timeout_s_min: float = 0.3
    election_timeout_s_max: float = 0.6
    append_entries_period_s: float = 0.05
    tick_period_s: float = 0.01
    leader_fallback_timeout_s: float = 1.5  #: a partitioned leader steps down after this
    connection_retry_s: float = 0.5
    dns_cache_s: float = 2.0  #: peer names are re-resolved after this: a rescheduled pod is found within seconds
    compaction_min_entries: int = 50_000
    compaction_min_time_s: float = 600.0
    propose_timeout_s: float = 5.0  #: past this a write's outcome is unknown (504)
    in_flight_max: int = 20_000  #: commands proposed and not yet answered; beyond it 503 Retry-After
    entry_commands_max: int = 256  #: group commit packs at most this many commands in one log entry
    fsync: bool = False  #: msync the journal before Raft acts on a record (survives power loss; slower)
    stuck_after_s: float = 10.0  #: committed entries waiting this long on a still applied index: stuck


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    interval_s: float = 0.05  #: plan at least this often while leading
    tick_interval_s: float = 1.0
    heartbeat_s: float = 1.0  #: workers heartbeat this often
    worker_lost_s: float = 10.0  #: silence before a worker is declared lost
    grace_s: float = 6.0  #: after an election, no worker is declared lost before this
    assign_batch_max: int = 500
    job_retention_s: float = 7 * 86_400.0  #: final jobs are pruned after this
    key_retention_s: float = 30 * 86_400.0  #: idempotency keys outlive their jobs this long
    prune_interval_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    id: str
    raft_addr: str
    raft_bind: str = ""  #: HOST:PORT the Raft port listens on; empty: raft_addr
    http_host: str = "127.0.0.1"
    http_port: int = 7001
    api_url: str = ""
    peers: tuple[Peer, ...] = ()
    #: API URLs of a running cluster this replica joins (live membership): it starts as a non-member,
    #: learns the configuration from them and asks the leader to add it (haco/server/join.py)
    join: tuple[str, ...] = ()
    join_catch_up_s: float = 120.0  #: the learner phase a joining replica asks for (a big snapshot takes time)
    data_dir: Path = Path("haco-data")
    raft_password: str | None = None
    body_bytes_max: int = 8 * 1024 * 1024
    token_secret: str | None = None  #: HMAC key for API tokens; None only with insecure_open_api
    insecure_open_api: bool = False  #: no tokens at all (refused unless the API binds to loopback)
    tls_cert: str | None = None  #: PEM files: HTTPS on the API when both are set
    tls_key: str | None = None
    tls_client_ca: str | None = None  #: CA that client (worker) certificates must chain to
    require_client_cert: str = "none"  #: none | workers | all (see haco/security/tls.py)
    ca_file: str | None = None  #: CA bundle this replica trusts when it calls a peer's API
    raft: RaftConfig = field(default_factory=RaftConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> NodeConfig:
        values: dict[str, object] = _from_statefulset(env) if k8s_env.enabled(env) else {}
        if "HACO_ID" in env:
            values["id"] = env["HACO_ID"]
        if "HACO_RAFT_ADDR" in env:
            values["raft_addr"] = env["HACO_RAFT_ADDR"]
        if "HACO_RAFT_BIND" in env:
            values["raft_bind"] = env["HACO_RAFT_BIND"]
        if "HACO_HTTP_ADDR" in env:
            host, _, port = env["HACO_HTTP_ADDR"].rpartition(":")
            values["http_host"], values["http_port"] = host, int(port)
        if "HACO_API_URL" in env:
            values["api_url"] = env["HACO_API_URL"]
        if env.get("HACO_PEERS"):
            values["peers"] = tuple(Peer.parse(p) for p in env["HACO_PEERS"].split(",") if p.strip())
        if env.get("HACO_JOIN"):
            values["join"] = tuple(u.strip().rstrip("/") for u in env["HACO_JOIN"].split(",") if u.strip())
        if env.get("HACO_JOIN_CATCH_UP_S"):
            values["join_catch_up_s"] = float(env["HACO_JOIN_CATCH_UP_S"])
        if "HACO_DATA_DIR" in env:
            values["data_dir"] = Path(env["HACO_DATA_DIR"])
        if "HACO_RAFT_PASSWORD" in env:
            values["raft_password"] = env["HACO_RAFT_PASSWORD"]
        elif "HACO_RAFT_PASSWORD_FILE" in env:
            values["raft_password"] = read_password(Path(env["HACO_RAFT_PASSWORD_FILE"]))
        values.update(_security_from_env(env))
        raft_tuning: dict[str, object] = {}
        if "HACO_COMPACTION_MIN_ENTRIES" in env:
            raft_tuning["compaction_min_entries"] = int(env["HACO_COMPACTION_MIN_ENTRIES"])
        if "HACO_COMPACTION_MIN_TIME_S" in env:
            raft_tuning["compaction_min_time_s"] = float(env["HACO_COMPACTION_MIN_TIME_S"])
        if "HACO_FSYNC" in env:
            raft_tuning["fsync"] = _flag(env["HACO_FSYNC"], "HACO_FSYNC")
        if "HACO_ENTRY_COMMANDS_MAX" in env:  # 1 turns group commit off (benchmarks)
            raft_tuning["entry_commands_max"] = int(env["HACO_ENTRY_COMMANDS_MAX"])
        if "HACO_DNS_CACHE_S" in env:
            raft_tuning["dns_cache_s"] = float(env["HACO_DNS_CACHE_S"])
        if "HACO_STUCK_AFTER_S" in env:
            raft_tuning["stuck_after_s"] = float(env["HACO_STUCK_AFTER_S"])
        if raft_tuning:
            values["raft"] = RaftConfig(**raft_tuning)  # type: ignore[arg-type]
        sched: dict[str, object] = {}
        for name, key in (("worker_lost_s", "HACO_WORKER_LOST_S"), ("grace_s", "HACO_GRACE_S"),
                          ("heartbeat_s", "HACO_HEARTBEAT_S"), ("tick_interval_s", "HACO_TICK_INTERVAL_S")):
            if key in env:
                sched[name] = float(env[key])
        if sched:
            values["scheduler"] = SchedulerConfig(**sched)  # type: ignore[arg-type]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "id" not in values or "raft_addr" not in values:
            raise ConfigError("a replica needs an id and a Raft address (--id, --raft or HACO_ID, HACO_RAFT_ADDR)")
        cfg = cls(**values)  # type: ignore[arg-type]
        if not cfg.api_url:
            scheme = "https" if cfg.tls_cert else "http"
            cfg = replace(cfg, api_url=f"{scheme}://{cfg.http_host}:{cfg.http_port}")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.id:
            raise ConfigError("id must not be empty")
        if any(p.id == self.id for p in self.peers):
            raise ConfigError(f"peers must not include this replica ({self.id})")
        if len({p.id for p in self.peers}) != len(self.peers):
            raise ConfigError("peer ids must be unique")
        if not self.raft_password:
            raise ConfigError("a Raft password is required (--raft-password-file or HACO_RAFT_PASSWORD): "
                              "it is the Raft port's cluster key (32 random bytes, hex)")
        self._validate_security()
        r = self.raft
        if r.entry_commands_max < 1:
            raise ConfigError("entry_commands_max must be at least 1")
        if not (r.election_timeout_s_min > 3 * r.append_entries_period_s and
                r.election_timeout_s_max > r.election_timeout_s_min):
            raise ConfigError("election timeouts must exceed 3 heartbeats and max must exceed min")

    def _validate_security(self) -> None:
        if self.token_secret is None and not self.insecure_open_api:
            raise ConfigError("the API needs a token secret (--token-secret-file or HACO_TOKEN_SECRET_FILE); "
                              "to run it open to anyone who can connect, pass --insecure-open-api (loopback only)")
        if self.token_secret is not None and len(self.token_secret) < 16:
            raise ConfigError("token secret must be at least 16 characters")
        if self.insecure_open_api and self.token_secret is None and not is_loopback(self.http_host):
            raise ConfigError(f"--insecure-open-api is allowed only on a loopback address, not {self.http_host}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("HTTPS needs both --tls-cert and --tls-key")
        if self.require_client_cert not in ("none", "workers", "all"):
            raise ConfigError("require_client_cert must be none, workers or all")
        if self.require_client_cert != "none" and not (self.tls_cert and self.tls_client_ca):
            raise ConfigError("--require-client-cert needs HTTPS (--tls-cert/--tls-key) and --tls-client-ca")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("--tls-client-ca needs HTTPS (--tls-cert/--tls-key)")


def is_loopback(host: str) -> bool:
    """True when every address `host` names (resolved, for a name) is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _security_from_env(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    if env.get("HACO_TOKEN_SECRET"):
        values["token_secret"] = env["HACO_TOKEN_SECRET"].strip()
    elif env.get("HACO_TOKEN_SECRET_FILE"):
        values["token_secret"] = read_secret_file(Path(env["HACO_TOKEN_SECRET_FILE"]))
    if env.get("HACO_INSECURE_OPEN_API", "").lower() in ("1", "true", "yes"):
        values["insecure_open_api"] = True
    for name in ("tls_cert", "tls_key", "tls_client_ca", "require_client_cert", "ca_file"):
        key = "HACO_" + name.upper()
        if env.get(key):
            values[name] = env[key]
    return values


def read_secret(path: Path, what: str) -> str:
    """The stripped, non-empty text of a secret file; `what` names it in the error."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{what} {path} is empty")
    return text


def read_secret_file(path: Path) -> str:
    return read_secret(path, "token secret file")


def _from_statefulset(env: Mapping[str, str]) -> dict[str, object]:
    """Id, addresses and peers of a StatefulSet pod (see haco/k8s_env.py)."""
    ident = k8s_env.derive(env)
    return {"id": ident.me.id, "raft_addr": ident.me.raft_addr, "raft_bind": ident.raft_bind,
            "http_host": ident.http_host, "http_port": ident.http_port, "api_url": ident.me.api_url,
            "peers": tuple(Peer(m.id, m.raft_addr, m.api_url) for m in ident.peers), "join": ident.join}


def _flag(text: str, name: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {text!r}")


def read_password(path: Path) -> str:
    return read_secret(path, "Raft password file")
