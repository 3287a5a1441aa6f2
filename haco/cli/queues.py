"""`haco queue create|update|list|pause|resume|delete`: named queues from the shell.

`pause` and `resume` without a name are the global pause, as `haco pause` and `haco resume`.
Errors leave through `haco.cli.main` like every command's (one line, exit 1 for a refusal);
a usage error found after parsing is exit 64.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from haco.cli import format as fmt
from haco.client import HacoClient

EXIT_OK, EXIT_USAGE = 0, 64
SETTINGS = ("max_running", "weight", "priority")


def register_cli(add: Callable[..., argparse.ArgumentParser], client_command: Callable[..., Any],
                 common: argparse.ArgumentParser) -> None:
    q = add("queue", "named queues: create, update, list, pause, resume, delete", _dispatch)
    sub = q.add_subparsers(dest="queue_action", metavar="ACTION", required=True)
    for action, fn, help_ in (("create", _create, "create a queue (admin)"),
                              ("update", _update, "change a queue's settings; the ones not given stay (admin)")):
        p = sub.add_parser(action, help=help_, description=help_, parents=[common])
        p.add_argument("name", metavar="NAME")
        p.add_argument("--max-running", type=int, metavar="N",
                       help="jobs of it running at once across the cluster, at most (0: no limit; create: 0)")
        p.add_argument("--weight", type=int, metavar="W",
                       help="its share of capacity against other queues with work, 1 to 1000 (create: 1)")
        p.add_argument("--priority", type=int, metavar="P",
                       help="the priority of its jobs submitted without one (create: 0)")
        p.set_defaults(queue_func=client_command(fn))
    sub.add_parser("list", help="every queue: settings and jobs by state", parents=[common]).set_defaults(
        queue_func=client_command(_list))
    for action, fn, help_ in (("pause", _pause, "pause a queue: none of its jobs start, running ones go on; "
                                                "no NAME: pause all scheduling (haco pause) (admin)"),
                              ("resume", _resume, "resume a queue; no NAME: resume scheduling (haco resume) "
                                                  "(admin)")):
        p = sub.add_parser(action, help=help_, description=help_, parents=[common])
        p.add_argument("name", metavar="NAME", nargs="?")
        p.set_defaults(queue_func=client_command(fn))
    d = sub.add_parser("delete", help="delete a queue that holds no pending or running job (admin)",
                       parents=[common])
    d.add_argument("name", metavar="NAME")
    d.set_defaults(queue_func=client_command(_delete))


def _dispatch(args: argparse.Namespace) -> Any:
    return args.queue_func(args)


def emit(args: argparse.Namespace, human: str, data: Any) -> None:
    print(fmt.dumps(data) if args.json else human)


def _given(args: argparse.Namespace) -> dict[str, int]:
    return {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}


def settings_text(queue: dict[str, Any]) -> str:
    """`max_running 4, weight 3, priority 10` (max_running `none` for no limit)."""
    limit = queue.get("max_running") or "none"
    return f"max_running {limit}, weight {queue.get('weight')}, priority {queue.get('priority')}"


async def _create(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.create_queue(args.name, **_given(args))
    queue = answer.get("queue") or {}
    said = "exists already with these settings" if answer.get("already") else "created"
    emit(args, f"queue {args.name} {said} ({settings_text(queue)})", answer)
    return EXIT_OK


async def _update(args: argparse.Namespace, client: HacoClient) -> int:
    given = _given(args)
    if not given:
        print("haco: error: give --max-running, --weight or --priority", file=sys.stderr)
        return EXIT_USAGE
    answer = await client.update_queue(args.name, **given)
    queue = answer.get("queue") or {}
    emit(args, f"queue {args.name}: {settings_text(queue)}" + (" (unchanged)" if answer.get("already") else ""),
         answer)
    return EXIT_OK


async def _list(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.request("GET", "/api/queues")
    emit(args, fmt.queues_table(answer), answer)
    return EXIT_OK


async def _pause(args: argparse.Namespace, client: HacoClient) -> int:
    if args.name is None:
        emit(args, fmt.GLOBAL_PAUSED, await client.pause())
        return EXIT_OK
    answer = await client.pause_queue(args.name)
    emit(args, f"queue {args.name} {'was already paused' if answer.get('already') else 'paused'}", answer)
    return EXIT_OK


async def _resume(args: argparse.Namespace, client: HacoClient) -> int:
    if args.name is None:
        emit(args, fmt.GLOBAL_RESUMED, await client.resume())
        return EXIT_OK
    answer = await client.resume_queue(args.name)
    emit(args, f"queue {args.name} {'was not paused' if answer.get('already') else 'resumed'}", answer)
    return EXIT_OK


async def _delete(args: argparse.Namespace, client: HacoClient) -> int:
    answer = await client.delete_queue(args.name)
    emit(args, f"queue {args.name} {'did not exist' if answer.get('already') else 'deleted'}", answer)
    return EXIT_OK
