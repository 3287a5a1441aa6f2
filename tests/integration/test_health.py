"""Health verdicts on real replicas: `haco status` (text, JSON, exit code), `GET /api/health/cluster`,
`/api/health/ready` and `/metrics` for a replica down, two down, and one whose apply is stuck."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from haco import cli
from haco.replica.progress import HANG_FILE_ENV

from .cluster import Cluster, eventually, http
from .test_metrics import scrape, v



def status(capsys: pytest.CaptureFixture[str], c: Cluster, *extra: str) -> tuple[int, str]:
    code = cli.main(["--coordinators", ",".join(c.urls), "--deadline", "3", "status", *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out


def test_status_says_degraded_with_one_replica_down_and_unhealthy_with_two(
        cluster_factory: Callable[..., Cluster], capsys: pytest.CaptureFixture[str]) -> None:
    c = cluster_factory(3)
    leader = c.leader()
    victim, other = [i for i in range(3) if i != leader]
    c.kill(victim)
    code, out = status(capsys, c)
    assert code == 4, out
    name = c.nodes[victim].id
    assert f"health:   DEGRADED: replica {name} unreachable; one more loss stops all writes" in out
    assert out.splitlines()[1 + victim].startswith(f"{name}  "), out  # its row keeps its configured id
    code, body = c.api(leader, "GET", "/api/health/cluster")
    assert (code, body["status"]) == (200, "degraded")
    assert body["summary"] == f"degraded: replica {name} unreachable; one more loss stops all writes"

    c.kill(other)
    code, out = status(capsys, c, "--json")
    report = json.loads(out)
    assert code == 2 and report["health"]["status"] == "unhealthy", out
    assert report["problems"][0].startswith("no majority: 1 of 3 replicas reachable")
    assert {c.nodes[victim].id, c.nodes[other].id} == {r["id"] for r in report["replicas"] if not r["reachable"]}
    code, body = c.api(leader, "GET", "/api/health/cluster")
    assert code == 503 and body["status"] == "unhealthy"


def test_a_replica_whose_apply_hangs_is_called_stuck_by_name(
        cluster_factory: Callable[..., Cluster], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The default bound (10 s): `haco status` says degraded naming the replica within 15 s of the
    hang, its readiness probe fails and /metrics shows it; once released it is healthy again."""
    hang = tmp_path / "hang-r3"
    c = cluster_factory(3, start=False)
    c.start(0)
    c.start(1)
    c.extra_env = {HANG_FILE_ENV: str(hang)}
    c.start(2)
    c.leader()
    c.converged()
    hang.touch()
    code, body = c.api(0, "POST", "/api/jobs", {"type": "noop", "payload": {}})
    assert code == 201, body

    def stuck() -> str | None:
        code, out = status(capsys, c)
        return out if code == 4 and "replica r3 stuck: applied index" in out else None
    out = eventually(stuck, 15, "haco status to call r3 stuck", interval_s=0.5)
    assert "degraded: replica r3 stuck: applied index" in out and "committed entries waiting" in out, out
    code, body = http("GET", c.nodes[2].url + "/api/health/ready")
    assert code == 503 and body["stuck"] is True
    assert http("GET", c.nodes[0].url + "/api/health/ready")[0] == 200
    assert v(scrape(c, 2), "haco_apply_stuck") == 1.0 and v(scrape(c, 0), "haco_apply_stuck") == 0.0

    hang.unlink()
    eventually(lambda: status(capsys, c)[0] == 0, 10, "a healthy verdict once r3 applies again")
