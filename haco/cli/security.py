"""`haco token create|revoke` and `haco certs init`: the security subcommands of the CLI.

`token create` works offline: it signs a token with the cluster's secret file and prints it
(and its id and expiry on stderr). `token revoke` goes through the API (admin token needed),
so every replica refuses the token once the revocation commits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from haco.client import HacoClient

SECRET_HELP = "the cluster's token secret file (default: $HACO_TOKEN_SECRET_FILE)"


def register_cli(add: Callable[..., argparse.ArgumentParser], client_command: Callable[..., Any],
                 common: argparse.ArgumentParser) -> None:
    """`common`: the global options, so they also work after `token create|revoke`."""
    t = add("token", "API tokens: `token create --role R --ttl 30d`, `token revoke ID`", _token_dispatch)
    sub = t.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="sign a new token with the cluster secret (offline)", parents=[common])
    c.add_argument("--role", required=True, choices=["admin", "submitter", "worker", "reader"])
    c.add_argument("--ttl", default="30d", help="lifetime: 30d, 12h, 90m or seconds (default 30d)")
    c.add_argument("--worker-id", help="the one worker id a worker token may connect as")
    c.add_argument("--secret-file", type=Path, help=SECRET_HELP)
    c.set_defaults(token_func=_create)
    r = sub.add_parser("revoke", help="revoke a token everywhere (through the Raft log; admin)", parents=[common])
    r.add_argument("token_or_id", metavar="ID|TOKEN", help="the token id, or the whole token")
    r.set_defaults(token_func=client_command(_revoke))
    p = add("certs", "TLS certificates: `haco certs init --dir D --hosts h1,h2` (a CA, server and client)", _certs)
    p.add_argument("action", choices=["init"])
    p.add_argument("--dir", type=Path, required=True, help="output directory")
    p.add_argument("--hosts", default="", metavar="H1,H2", help="server names/IPs (localhost and 127.0.0.1 always)")
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    p.add_argument("--client-cn", default="haco-worker", help="the client certificate's common name")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def _certs(args: argparse.Namespace) -> int:
    from haco.security.certs import run_certs  # imports cryptography: only for this command
    return run_certs(args)


def _token_dispatch(args: argparse.Namespace) -> Any:
    return args.token_func(args)


def _create(args: argparse.Namespace) -> int:
    import os

    from haco.security.tokens import issue, parse_ttl, read_secret
    path = args.secret_file or (Path(os.environ["HACO_TOKEN_SECRET_FILE"]) if os.environ.get(
        "HACO_TOKEN_SECRET_FILE") else None)
    if path is None:
        print("haco: error: --secret-file (or $HACO_TOKEN_SECRET_FILE) is needed", file=sys.stderr)
        return 64
    try:
        token, claims = issue(read_secret(path), args.role, parse_ttl(args.ttl), worker_id=args.worker_id,
                              now_s=time.time())
    except ValueError as exc:
        print(f"haco: error: {exc}", file=sys.stderr)
        return 64
    if getattr(args, "json", False):
        print(json.dumps({"token": token, "id": claims.id, "role": claims.role, "expires_at": claims.exp,
                          "worker_id": claims.worker_id}))
    else:
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims.exp))
        print(f"token id {claims.id}, role {claims.role}, expires {expires}", file=sys.stderr)
        print(token)
    return 0


async def _revoke(args: argparse.Namespace, client: HacoClient) -> int:
    from haco.security.tokens import PREFIX
    value = args.token_or_id
    body = {"token": value} if value.startswith(PREFIX + ".") else {"token_id": value}
    answer = await client.request("POST", "/api/tokens/revoke", body=body)
    if getattr(args, "json", False):
        print(json.dumps(answer))
    else:
        print(f"revoked {answer['token_id']} at index {answer['index']}")
    return 0
