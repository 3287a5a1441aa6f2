"""`haco operator members|add-replica|remove-replica`: live membership of the replicas.

Each change goes through the leader, one at a time (haco/replica/membership.py): `add-replica`
returns once the new replica caught up as a learner and became a voter, `remove-replica` once
the configuration without it is in the log. Both need an admin token.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from haco.client import HacoClient

EXIT_OK = 0


def register_cli(add: Callable[..., argparse.ArgumentParser], client_command: Callable[..., Any],
                 common: argparse.ArgumentParser) -> None:
    o = add("operator", "cluster membership: `operator members`, `add-replica ID --raft ADDR --http URL`, "
                        "`remove-replica ID`; `compact`: every replica takes a snapshot now", _dispatch)
    sub = o.add_subparsers(dest="operator_action", metavar="ACTION", required=True)
    m = sub.add_parser("members", help="members: voter or learner, addresses, last contact, applied index",
                       parents=[common])
    m.set_defaults(operator_func=client_command(_members))
    a = sub.add_parser("add-replica", help="add a running replica (started with --join, or with no peers)",
                       parents=[common])
    a.add_argument("replica_id", metavar="ID")
    a.add_argument("--raft", required=True, metavar="HOST:PORT", help="its Raft address, as its peers reach it")
    a.add_argument("--http", required=True, metavar="URL", help="its API URL, as its peers reach it")
    a.add_argument("--catch-up", type=float, default=30.0, metavar="S",
                   help="how long it may take to catch up as a learner before it is refused (30)")
    a.set_defaults(operator_func=client_command(_add))
    r = sub.add_parser("remove-replica", help="remove a replica (the leader hands over first)", parents=[common])
    r.add_argument("replica_id", metavar="ID")
    r.set_defaults(operator_func=client_command(_remove))
    from haco.cli.snapshot import add_compact
    add_compact(sub, client_command, common)


def _dispatch(args: argparse.Namespace) -> Any:
    return args.operator_func(args)


async def _members(args: argparse.Namespace, client: HacoClient) -> int:
    view = await client.members()
    infos = await asyncio.gather(*(_applied(client, str(m["api_url"])) for m in view["members"]))
    for m, info in zip(view["members"], infos):
        m["applied_index"] = None if info is None else info.get("applied_index")
        m["role"] = None if info is None else info.get("role")
    from haco.cli import emit
    emit(args, members_table(view), view)
    return EXIT_OK


async def _applied(client: HacoClient, url: str) -> dict[str, Any] | None:
    try:
        return await client.cluster(url, timeout_s=2.0)
    except Exception:  # a member that does not answer is shown as such
        return None


def members_table(view: dict[str, Any]) -> str:
    rows = [("ID", "VOTER", "ROLE", "RAFT", "HTTP", "LAST CONTACT", "MATCH", "APPLIED")]
    for m in view["members"]:
        contact = m.get("last_contact_s")
        rows.append((str(m["id"]) + (" *" if m["id"] == view.get("leader") else ""),
                     "voter" if m["voter"] else "learner", str(m.get("role") or "unreachable"), str(m["raft_addr"]),
                     str(m["api_url"]), "-" if contact is None else f"{contact:.1f}s ago",
                     str(m.get("match_index", "-")), str(m.get("applied_index") if m.get("applied_index") is not None
                                                         else "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    tail = "(* leader)" + ("; a membership change is in progress" if view.get("in_flight") else "")
    return "\n".join(lines + [tail])


async def _add(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.add_replica(args.replica_id, args.raft, args.http.rstrip("/"), catch_up_s=args.catch_up)
    from haco.cli import emit
    what = "is a voter already" if answer.get("already") else f"added (caught up in {answer.get('caught_up_s')}s)"
    emit(args, f"{args.replica_id} {what}", answer)
    return EXIT_OK


async def _remove(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.remove_replica(args.replica_id)
    from haco.cli import emit
    emit(args, f"{args.replica_id} {'was not a member' if answer.get('already') else 'removed'}", answer)
    return EXIT_OK
