"""A chaos run of membership faults: a follower and the leader removed from the configuration,
wiped and rejoined with --join, between leader kills; every checker holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FAULTS = "member_remove,leader_remove,leader_kill"


@pytest.mark.timeout(300)
def test_membership_faults_keep_every_guarantee(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    args = [sys.executable, "-m", "chaos", "run", "--replicas", "3", "--workers", "1", "--duration", "40",
            "--seed", "5", "--concurrency", "4", "--faults", FAULTS, "--faults-count", "4",
            "--report", str(report_path)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    report = json.loads(report_path.read_text())
    for kind in FAULTS.split(","):
        assert report["faults"].get(kind, 0) >= 1, report["faults"]
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["ok"] for c in checks.values()), proc.stdout
    assert checks["total_queue"]["figures"]["lost"] == 0
    assert checks["digests_agree"]["figures"]["indexes_compared"] > 0
