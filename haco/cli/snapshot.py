"""`haco snapshot save|inspect|restore` and `haco operator compact`: backups for operators.

`save` streams a replica's latest snapshot over the API (admin token). `inspect` and `restore`
work on a file, offline: they load DuckDB and the state machine's snapshot codec (through
haco/server/snapshot_file.py, imported only when they run, so `haco submit` never loads them).
`inspect` exits 1 when the file does not verify; `restore` refuses such a file.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from haco.client import HacoClient

EXIT_OK, EXIT_FAILED = 0, 1


def register_cli(add: Callable[..., argparse.ArgumentParser], client_command: Callable[..., Any],
                 common: argparse.ArgumentParser) -> None:
    s = add("snapshot", "a snapshot of the cluster's state: `snapshot save FILE` (admin), `inspect FILE`, "
                        "`restore FILE --data-dir DIR`", _dispatch)
    sub = s.add_subparsers(dest="snapshot_action", metavar="ACTION", required=True)
    sv = sub.add_parser("save", help="stream a replica's latest snapshot into FILE (atomically; admin token)",
                        parents=[common])
    sv.add_argument("file", metavar="FILE")
    sv.set_defaults(snapshot_func=client_command(_save))
    i = sub.add_parser("inspect", help="schema, index, term, digest and row counts of FILE; exit 1 unless its "
                                       "digest verifies (recomputed from its tables)", parents=[common])
    i.add_argument("file", metavar="FILE")
    i.set_defaults(snapshot_func=_inspect)
    r = sub.add_parser("restore", help="prepare a stopped replica's data dir to start from FILE (refused unless "
                                       "FILE verifies); do it for every replica's data dir", parents=[common])
    r.add_argument("file", metavar="FILE")
    r.add_argument("--data-dir", required=True, metavar="DIR", help="the replica's data dir (--data-dir of "
                                                                      "haco coordinator)")
    r.add_argument("--force", action="store_true", help="DIR holds a replica's files: move them aside "
                                                        "(DIR/before-restore-TIME/) instead of refusing")
    r.set_defaults(snapshot_func=_restore)


def add_compact(sub: Any, client_command: Callable[..., Any], common: argparse.ArgumentParser) -> None:
    """`haco operator compact`, an action of the `operator` command's subparsers."""
    c = sub.add_parser("compact", help="every replica takes a snapshot now (admin token)", parents=[common])
    c.set_defaults(operator_func=client_command(_compact))


def _dispatch(args: argparse.Namespace) -> Any:
    return args.snapshot_func(args)


async def _save(args: argparse.Namespace, client: HacoClient) -> int:
    saved = await client.save_snapshot(args.file)
    from haco.cli import emit
    emit(args, f"saved {saved.path}: index {saved.snapshot_index}, {saved.bytes} bytes, from {saved.url}",
         {"path": saved.path, "bytes": saved.bytes, "snapshot_index": saved.snapshot_index, "url": saved.url})
    return EXIT_OK


def _inspect(args: argparse.Namespace) -> int:
    from haco.server.snapshot_file import inspect
    found = inspect(args.file)
    from haco.cli import emit
    emit(args, inspect_text(found.to_json()), found.to_json())
    return EXIT_OK if found.verified else EXIT_FAILED


def inspect_text(r: dict[str, Any]) -> str:
    lines = [f"file            {r['path']} ({r['bytes']} bytes)",
             f"schema version  {r['schema_version']}",
             f"raft index      {r['raft_index']}",
             f"raft term       {r['raft_term']}",
             f"digest          {r['digest']} (saved), {r['rebuilt_digest'] or '-'} (rebuilt from the tables)"]
    if r["counts"]:
        lines.append("rows            " + ", ".join(f"{t} {n}" for t, n in r["counts"].items()))
    if r["jobs_by_status"]:
        lines.append("jobs            " + ", ".join(f"{s} {n}" for s, n in r["jobs_by_status"].items()))
    lines.append("verified        yes" if r["verified"] else f"verified        NO: {r['problem']}")
    return "\n".join(lines)


def _restore(args: argparse.Namespace) -> int:
    from haco.server.snapshot_file import restore
    done = restore(args.file, args.data_dir, force=args.force)
    from haco.cli import emit
    text = (f"restored {args.file} into {done.data_dir}: index {done.raft_index}, term {done.raft_term}, "
            f"digest {done.digest}, {done.jobs} jobs")
    if done.moved_aside:
        text += f"\nthe data dir's previous files are in {done.moved_aside}"
    emit(args, text + "\nstart the replica with this --data-dir; restore every replica's data dir the same way",
         {"data_dir": done.data_dir, "raft_index": done.raft_index, "raft_term": done.raft_term,
          "digest": done.digest, "jobs": done.jobs, "moved_aside": done.moved_aside})
    return EXIT_OK


async def _compact(args: argparse.Namespace, client: HacoClient) -> int:
    replicas = await client.status()
    urls = list(dict.fromkeys([r.url for r in replicas] + [str(p["api_url"]).rstrip("/") for r in replicas
                                                           for p in (r.info or {}).get("peers") or []
                                                           if p.get("api_url")]))
    answers = await asyncio.gather(*(client.compact(u) for u in urls), return_exceptions=True)
    rows, failed, out = [], 0, []
    for url, a in zip(urls, answers):
        if isinstance(a, BaseException):
            failed += 1
            rows.append(f"{url}  failed: {getattr(a, 'message', None) or a}")
            out.append({"url": url, "error": str(getattr(a, "message", None) or a)})
        else:
            what = "already current" if a.get("already") else f"written in {a.get('seconds')}s"
            rows.append(f"{url}  {a.get('id')}  snapshot index {a.get('snapshot_index')} ({what})")
            out.append({"url": url, **a})
    from haco.cli import emit
    emit(args, "\n".join(rows), out)
    return EXIT_FAILED if failed else EXIT_OK
