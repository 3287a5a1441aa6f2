"""The dashboard (`GET /`) in headless Chromium shows the leader and a submitted job; a screenshot is saved.

Needs Debian's `chromium` (`.ci/run` installs it). The page fetches `/api/dashboard` and renders it
with no build step; `--dump-dom` gives the DOM after its scripts ran, within a virtual-time budget.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster, eventually, http

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium; .ci/run does)")
SCREENSHOT_DIR = Path(os.environ.get("HACO_SCREENSHOT_DIR", "test-artifacts"))


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "--window-size=1400,1000",
           "--virtual-time-budget=5000", "--run-all-compositor-stages-before-draw", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, start_new_session=True)


def test_dashboard_shows_the_leader_and_a_submitted_job(cluster_factory: Callable[..., Cluster],
                                                       tmp_path: Path) -> None:
    c = cluster_factory(3, start=False)
    c.auth, c.admin = True, c.token("admin")  # tokens on, as deployed: the page takes a reader token
    c.start_all()
    reader = c.token("reader")
    leader = c.nodes[c.leader()].id
    status, body = c.api(0, "POST", "/api/jobs", {"type": "noop", "payload": {}, "required_tags": ["gpu"],
                                                  "key": "dash-1"})
    assert status == 201, body
    job_id = body["job_id"]
    follower = next(i for i, n in enumerate(c.nodes) if n.id != leader)
    eventually(lambda: c.api(follower, "GET", f"/api/jobs/{job_id}?min_index={body['index']}")[0] == 200,
               10, "the follower applied the submission")
    assert http("GET", c.nodes[follower].url + "/api/dashboard")[0] == 401
    status, data = http("GET", c.nodes[follower].url + "/api/dashboard", token=reader)
    assert status == 200 and data["leader"] == leader and [j["job_id"] for j in data["jobs"]] == [job_id]
    assert {r["id"] for r in data["replicas"] if r["reachable"]} == {n.id for n in c.nodes}, "reader token forwarded"
    assert data["jobs"][0]["pending_reason"] == {"workers": "no workers registered"}

    c.start_worker("w-cpu", capacity=2, tags="cpu")  # with its own worker token
    status, done = c.api(0, "POST", "/api/jobs", {"type": "noop", "payload": {}, "key": "dash-2"})
    assert status == 201, done

    def settled() -> dict[str, Any] | None:
        d = http("GET", c.nodes[follower].url + "/api/dashboard", token=reader)[1]
        workers = [w for w in d["workers"] if w["worker_id"] == "w-cpu" and w["load"]]
        return d if workers and d["queue"]["counts"]["completed"] == 1 else None
    data = eventually(settled, 20, "the worker's load and the completed job in the dashboard data")
    assert [j["job_id"] for j in data["jobs"]] == [done["job_id"], job_id]
    assert data["jobs"][1]["pending_reason"] == {"no_worker_fits": {"w-cpu": ["missing tags ['gpu']"]}}

    page = f"{c.nodes[follower].url}/#token={reader}"
    dom = chromium(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert re.search(rf'id="leader" class="leader">{re.escape(leader)}<', html), html[:3000]
    assert job_id in html and done["job_id"] in html and "no_worker_fits" in html and "missing tags" in html
    assert "w-cpu" in html and re.search(r"cpu \d+%, mem \d+%", html), "the worker's load is shown"
    assert html.count("<span class=\"leader\">leader</span>") == 1, "exactly one replica shown as leader"
    assert "<div id=\"err\" class=\"bad\"></div>" in html, "the page reported a failed refresh"

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = (SCREENSHOT_DIR / "dashboard.png").resolve()
    shot.unlink(missing_ok=True)
    out = chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
