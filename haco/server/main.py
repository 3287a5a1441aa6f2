"""`haco coordinator`: one replica process (Raft node + HTTP API + scheduler when leading)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from haco.config import NodeConfig, Peer, read_password, read_secret_file
from haco.errors import ConfigError

log = logging.getLogger(__name__)


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("coordinator", help="run one coordinator replica",
                              description="Run one replica. Flags override HACO_* environment variables.")
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--id", help="replica id (HACO_ID)")
    p.add_argument("--raft", help="this replica's Raft HOST:PORT (HACO_RAFT_ADDR)")
    p.add_argument("--http", help="HTTP API HOST:PORT (HACO_HTTP_ADDR), default 127.0.0.1:7001")
    p.add_argument("--api-url", help="URL peers and workers use to reach this API (HACO_API_URL)")
    p.add_argument("--peer", action="append", default=[], metavar="ID=HOST:PORT=URL",
                   help="another replica (repeat; HACO_PEERS is a comma-separated list)")
    p.add_argument("--join", metavar="URL,...",
                   help="join a running cluster through any of its replicas' API URLs (HACO_JOIN): learn its "
                        "members, then ask its leader to add this replica (learner, then voter)")
    p.add_argument("--data-dir", help="data directory (HACO_DATA_DIR)")
    p.add_argument("--raft-password-file", help="file holding the Raft shared secret (HACO_RAFT_PASSWORD_FILE)")
    p.add_argument("--token-secret-file", help="file holding the API token secret (HACO_TOKEN_SECRET_FILE)")
    p.add_argument("--insecure-open-api", action="store_true", default=None,
                   help="serve the API without tokens (HACO_INSECURE_OPEN_API=1); loopback binds only")
    p.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (HACO_TLS_CERT)")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert (HACO_TLS_KEY)")
    p.add_argument("--tls-client-ca", help="CA for client certificates, mTLS (HACO_TLS_CLIENT_CA)")
    p.add_argument("--require-client-cert", choices=["none", "workers", "all"],
                   help="workers: the worker websocket needs a client certificate; all: every connection "
                        "(HACO_REQUIRE_CLIENT_CERT, default none)")
    p.add_argument("--ca-file", help="CA bundle trusted when calling a peer's HTTPS API (HACO_CA_FILE)")
    p.add_argument("--fsync", action="store_true", default=None,
                   help="sync the Raft journal before acknowledging (survives power loss; slower) (HACO_FSYNC=1)")
    p.add_argument("--log-level", default=os.environ.get("HACO_LOG_LEVEL", "info"))


def config_from_args(args: argparse.Namespace, env: dict[str, str]) -> NodeConfig:
    overrides: dict[str, object] = {"id": args.id, "raft_addr": args.raft, "api_url": args.api_url}
    if args.http:
        host, _, port = args.http.rpartition(":")
        overrides["http_host"], overrides["http_port"] = host or "127.0.0.1", int(port)
    if args.peer:
        overrides["peers"] = tuple(Peer.parse(p) for p in args.peer)
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if args.join:
        overrides["join"] = tuple(u.strip().rstrip("/") for u in args.join.split(",") if u.strip())
    if args.raft_password_file:
        overrides["raft_password"] = read_password(Path(args.raft_password_file))
    if args.token_secret_file:
        overrides["token_secret"] = read_secret_file(Path(args.token_secret_file))
    overrides.update({"insecure_open_api": args.insecure_open_api, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
                      "tls_client_ca": args.tls_client_ca, "require_client_cert": args.require_client_cert,
                      "ca_file": args.ca_file})
    if args.fsync:
        env = {**env, "HACO_FSYNC": "1"}
    return NodeConfig.from_env(env, **overrides)


def run_from_args(args: argparse.Namespace) -> int:
    from haco.logs import configure
    configure(args.log_level)
    try:
        cfg = config_from_args(args, dict(os.environ))
    except (ConfigError, ValueError) as exc:
        print(f"haco: error: {exc}", file=sys.stderr)
        return 64
    if cfg.token_secret is None:
        print(f"haco: WARNING: the API at {cfg.api_url} is OPEN (--insecure-open-api): anyone who can connect "
              "may submit, cancel and run commands on workers", file=sys.stderr)
    try:
        ssl_context = _server_ssl(cfg)
    except (OSError, ssl.SSLError, ValueError) as exc:
        print(f"haco: error: cannot set up TLS: {exc}", file=sys.stderr)
        return 64
    return asyncio.run(serve(cfg, ssl_context))


async def serve(cfg: NodeConfig, ssl_context: ssl.SSLContext | None = None) -> int:
    """Run a replica until SIGTERM/SIGINT. A snapshot that does not load, or a journal damaged
    before its last good record, stops it (exit 70)."""
    from raft_state.snapshot import SnapshotError

    from haco.replica.journal import JournalCorrupt
    from haco.replica.node import Replica
    from haco.replica.runtime import settle_heap, tune_gc
    from haco.server.app import build_app
    tune_gc()
    replica = Replica(cfg)
    try:
        await asyncio.to_thread(replica.load_local_snapshot)
    except SnapshotError as exc:
        log.critical("cannot start: %s", exc)
        print(f"haco: error: {exc}; move the file away to rebuild this replica from its peers", file=sys.stderr)
        return 70
    try:
        await asyncio.to_thread(replica.open_journal)
    except JournalCorrupt as exc:
        log.critical("cannot start: %s", exc)
        print(f"haco: error: {exc}", file=sys.stderr)
        return 70
    settle_heap()
    results = None
    try:
        from haco.results.store import ResultsStore
        results = await asyncio.to_thread(ResultsStore.open, cfg.data_dir / "results.duckdb")
    except ImportError:
        log.warning("results store unavailable")
    loop = asyncio.get_running_loop()
    app = build_app(cfg, replica, results)
    if cfg.join:
        from haco.server.join import ask_to_join, learn_members
        replica.join_members = await learn_members(cfg)
    replica.start(loop)
    logging.getLogger("aiohttp.server").addFilter(_one_line_for_bad_http)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, cfg.http_host, cfg.http_port, reuse_address=True, ssl_context=ssl_context)
    await site.start()
    log.info("serving replica=%s http=%s:%d", cfg.id, cfg.http_host, cfg.http_port)
    joining = loop.create_task(ask_to_join(cfg, replica), name="join") if cfg.join else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping replica=%s", cfg.id)
    if joining is not None:
        joining.cancel()
    await replica.stop(transfer=True)
    await runner.cleanup()  # after the replica stopped: the results feed flushes what ended before the stop
    if results is not None:
        await asyncio.to_thread(results.close)
    return 0


def _one_line_for_bad_http(record: logging.LogRecord) -> bool:
    """aiohttp logs a malformed request (bad request line, oversized header) at ERROR with a
    traceback; the client already got a 400. One WARNING line each, so hostile input cannot
    flood the log with stack traces."""
    from aiohttp.http_exceptions import HttpProcessingError
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "bad HTTP request refused: %s", (str(exc.message).splitlines()[0][:200],)
        record.exc_info = record.exc_text = None
    return True


def _server_ssl(cfg: NodeConfig) -> ssl.SSLContext | None:
    if not (cfg.tls_cert and cfg.tls_key):
        return None
    from haco.security.tls import server_context
    return server_context(cfg.tls_cert, cfg.tls_key, client_ca=cfg.tls_client_ca, require=cfg.require_client_cert)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="haco coordinator")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
