"""`python -m chaos run ...`: argument parsing, the summary, the exit code (0 only when every check passed)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .nemesis import FAULTS
from .run import RunConfig, run

__all__ = ["main", "summary"]


def _faults(text: str) -> tuple[str, ...]:
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in names if f not in FAULTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown fault(s) {unknown}; choose from {','.join(FAULTS)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m chaos", description="fault-injection runs against real haco processes")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="start a cluster, inject faults under load, check the guarantees")
    r.add_argument("--replicas", type=int, choices=(3, 5), default=3)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--duration", type=float, default=60.0, metavar="S", help="no new fault starts after S seconds")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--concurrency", type=int, default=4, help="concurrent clients")
    r.add_argument("--faults", type=_faults, default=RunConfig().faults, metavar="A,B",
                   help=f"fault mix, from {','.join(FAULTS)}")
    r.add_argument("--faults-count", type=int, default=0, metavar="N",
                   help="faults to schedule (default: one of each kind); the run stops at N or --duration")
    r.add_argument("--min-leader-kills", type=int, default=0, metavar="N")
    r.add_argument("--drain", type=float, default=180.0, metavar="S", help="how long jobs may take to finish")
    r.add_argument("--report", type=Path, help="write the JSON report here (history beside it)")
    r.add_argument("--keep", action="store_true", help="keep the temp dir (data dirs, logs)")
    r.add_argument("--json", action="store_true", help="print the report as JSON instead of the summary")
    return p


def summary(report: dict[str, Any]) -> str:
    lines = [f"chaos run: {'PASS' if report['ok'] else 'FAIL'} in {report['seconds']}s, seed {report['seed']}, "
             f"{report['replicas']} replicas, {report['workers']} workers, {report['faults_total']} faults "
             + json.dumps(report["faults"], sort_keys=True)]
    f = report["figures"]
    lines.append(f"  ops {json.dumps(f.get('ops'))}; jobs {f.get('jobs')}; drained {f.get('drained')}; "
                 f"stale reports refused {f.get('stale_refused')}; unhealthy waits {f.get('unhealthy_waits')}; "
                 f"phases {json.dumps(f.get('phase_s'))}")
    for c in report["checks"]:
        figs = {k: v for k, v in c["figures"].items() if k != "by_kind"}
        lines.append(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {json.dumps(figs, sort_keys=True)}")
        lines += [f"       - {p}" for p in c["problems"][:5]]
    lines += [f"  FAIL {p}" for p in report["problems"]]
    lines.append(f"  history: {report['history']}" + (f"; kept: {report['kept_dir']}" if report["kept_dir"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = RunConfig(replicas=args.replicas, workers=args.workers, duration_s=args.duration, seed=args.seed,
                    concurrency=args.concurrency, faults=args.faults, faults_count=args.faults_count,
                    min_leader_kills=args.min_leader_kills, report=args.report, keep=args.keep, drain_s=args.drain)
    try:
        report = run(cfg)
    except KeyboardInterrupt as exc:
        print(f"chaos run interrupted ({exc}); everything it started was stopped", file=sys.stderr)
        return 130
    print(json.dumps(report, indent=2, default=str) if args.json else summary(report))
    return 0 if report["ok"] else 1
