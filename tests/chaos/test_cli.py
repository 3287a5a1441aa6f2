"""`python -m chaos`: usage errors, and the summary a failing report prints."""

from __future__ import annotations

import subprocess
import sys

from chaos.checkers import run_all
from chaos.cli import summary


def test_an_unknown_fault_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "chaos", "run", "--faults", "leader_kill,meteor"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "meteor" in proc.stderr


def test_summary_names_the_failing_check_and_its_problem() -> None:
    records = [{"kind": "op", "op": "submit", "key": "k", "job_id": "j", "invoke_mono": 1.0,
                "complete_mono": 1.1, "outcome": "ok"}]
    checks = [c.to_json() for c in run_all(records)]
    report = {"ok": False, "seconds": 1.0, "seed": 1, "replicas": 3, "workers": 2, "faults": {}, "faults_total": 0,
              "figures": {"drained": True}, "checks": checks, "problems": [], "history": "h.jsonl",
              "kept_dir": None}
    text = summary(report)
    assert text.startswith("chaos run: FAIL")
    assert "FAIL total_queue" in text and "lost: acknowledged key k" in text
