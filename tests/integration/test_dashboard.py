"""The dashboard (`GET /`) in a real browser against a live 3-replica cluster holding 5,000 jobs.

Playwright for Python drives the distribution's Chromium (/usr/bin/chromium; `.ci/run` installs
it; no browser is downloaded). The page finds a pending job by its key, opens it, shows why it
waits and its dependency graph; cancelling from the page ends it, draining a worker from the page
drains it, and the named queues panel lists a created queue with its settings and counts, which
pausing and resuming from the page pause and resume (each checked through the API). Screenshots of the jobs list and the job view go
to $HACO_TEST_ARTIFACTS (default test-artifacts/); each view's render time is logged, not asserted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cluster import Cluster, eventually, http

ARTIFACTS = Path(os.environ.get("HACO_TEST_ARTIFACTS", "test-artifacts"))
BULK = 5000
BATCH = 2000  #: SUBMIT_BATCH_MAX
TARGET_KEY = "release-build-42"
QUEUE = "nightly"
log = logging.getLogger(__name__)


def _submit_bulk(c: Cluster) -> None:
    """5,000 jobs in three batch submits: each needs a GPU, so every one stays pending."""
    spec = {"type": "noop", "payload": {}, "required_tags": ["gpu"], "labels": {"suite": "bulk"}}
    for start in range(0, BULK, BATCH):
        jobs = [{**spec, "key": f"bulk-{i:05d}"} for i in range(start, min(BULK, start + BATCH))]
        _post(c, "/api/jobs/batch", {"jobs": jobs})


def _post(c: Cluster, path: str, body: Any) -> Any:
    """A write, again on 503/504 (a leader still settling): keyed, so a repeat is harmless."""
    answers: list[tuple[int, Any]] = []

    def attempt() -> Any:
        status, answer = c.api(0, "POST", path, body, timeout=30)
        answers.append((status, answer))
        assert status not in (503, 504), answer
        return answer
    answer = eventually(attempt, 20, f"POST {path} accepted", interval_s=0.5)
    assert answers[-1][0] in (200, 201), answers[-1]
    return answer


def _renders(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("window.hacoRenders || []"))


def _wait_render(page: Any, view: str, before: int) -> float:
    """Wait until `view` rendered once more than `before` times; its render time in ms."""
    page.wait_for_function(f"(window.hacoRenders || []).filter(r => r.view === {json.dumps(view)}).length > {before}",
                           timeout=15_000)
    ms = [r["ms"] for r in _renders(page) if r["view"] == view][before]
    log.info("dashboard render view=%s ms=%d", view, ms)
    print(f"dashboard render view={view} ms={ms}")
    return float(ms)


def _count(page: Any, view: str) -> int:
    return sum(1 for r in _renders(page) if r["view"] == view)


def test_dashboard_finds_opens_cancels_drains_and_pauses_a_queue(cluster_factory: Callable[..., Cluster], browser: Any) -> None:
    t0 = time.monotonic()
    c = cluster_factory(3, start=False)
    c.auth, c.admin = True, c.token("admin")  # tokens on, as deployed
    c.start_all()
    leader = c.nodes[c.leader()].id
    follower = next(i for i, n in enumerate(c.nodes) if n.id != leader)
    assert http("GET", c.nodes[follower].url + "/api/dashboard")[0] == 401
    c.start_worker("w-cpu", capacity=2, tags="cpu")
    _submit_bulk(c)
    flow = _post(c, "/api/jobs/batch", {"group": "g-release", "jobs": [
        {"type": "noop", "payload": {}, "name": "fetch"}, {"type": "noop", "payload": {}, "name": "lint"}]})
    fetch_id, lint_id = flow["job_ids"]
    body = _post(c, "/api/jobs", {"type": "noop", "payload": {}, "key": TARGET_KEY, "depends_on": [fetch_id, lint_id],
                                  "required_tags": ["gpu"]})
    target = body["job_id"]
    eventually(lambda: all(c.api(follower, "GET", f"/api/jobs/{j}?min_index={body['index']}")[1]["job"]["status"]
                           == "completed" for j in (fetch_id, lint_id)), 20, "the jobs it depends on completed")
    setup_s = time.monotonic() - t0
    log.info("dashboard setup s=%.1f jobs=%d", setup_s, BULK + 3)

    reader = c.token("reader")
    data = http("GET", c.nodes[follower].url + "/api/dashboard", token=reader)[1]
    assert {r["id"] for r in data["replicas"] if r["reachable"]} == {n.id for n in c.nodes}, "reader token forwarded"
    assert data["queue"]["counts"]["pending"] >= BULK

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{c.nodes[follower].url}/#token={c.admin}")
    _wait_render(page, "overview", 0)
    assert "token" not in page.url, "the token left the address bar"
    assert page.evaluate("sessionStorage.getItem('haco-token')") == c.admin
    assert page.inner_text("#leader") in {n.id for n in c.nodes}  # (leadership may move on a busy machine)
    page.wait_for_selector("#chart-throughput")
    assert int(page.inner_text("#queues tr[data-queue=default] td:nth-child(6)")) >= BULK, "the default queue"

    page.click("nav a[data-view=jobs]")
    _wait_render(page, "jobs", 0)
    assert f"of {BULK + 3} matching" in page.inner_text("#job-count")
    page.screenshot(path=str(ARTIFACTS / "dashboard-jobs.png"))
    _post(c, "/api/queues", {"name": QUEUE, "max_running": 1, "weight": 2})  # after the shot the docs show
    nightly = _post(c, "/api/jobs/batch", {"jobs": [
        {"type": "noop", "payload": {}, "queue": QUEUE, "key": "nightly-0"},
        *({"type": "noop", "payload": {}, "queue": QUEUE, "key": f"nightly-{i}", "required_tags": ["gpu"]}
          for i in (1, 2))]})

    before = _count(page, "jobs")
    page.fill("#job-filters input[name=q]", TARGET_KEY)
    page.select_option("#job-filters select[name=status]", "pending")  # submits the form
    _wait_render(page, "jobs", before)
    page.wait_for_selector(f"a.job[href='#/job/{target}']")
    assert "1–1 of 1 matching" in page.inner_text("#job-count")

    page.click(f"a.job[href='#/job/{target}']")
    _wait_render(page, "job", 0)
    why = page.inner_text("#pending-reason")
    assert "waiting on" not in why and "no worker fits" in why and "w-cpu" in why and "gpu" in why, why
    assert page.locator("svg.graph .node").count() == 3, "fetch and lint -> the job"
    page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)

    before = _count(page, "job")
    page.click("#job-cancel")
    _wait_render(page, "job", before)
    eventually(lambda: c.api(0, "GET", f"/api/jobs/{target}")[1]["job"]["status"] == "cancelled", 10,
               "the job cancelled from the page")
    page.wait_for_selector("h2 .s-cancelled")

    eventually(lambda: c.api(follower, "GET", f"/api/jobs/{nightly['job_ids'][0]}?min_index={nightly['index']}")[1]
               ["job"]["status"] == "completed", 20, "the nightly job that fits completed")
    page.click("nav a[data-view=overview]")
    row = f"#queues tr[data-queue={QUEUE}]"
    page.wait_for_selector(row)
    cells = [page.inner_text(f"{row} td:nth-child({k})") for k in range(1, 11)]
    # queue, paused, max running, weight, priority, pending, ready, running (of max running), completed, failed
    assert cells == [QUEUE, "no", "1", "2", "0", "2", "2", "0/1", "1", "0"], cells
    page.wait_for_selector("button.drain[data-worker=w-cpu]")
    page.click("button.drain[data-worker=w-cpu]")
    eventually(lambda: c.api(0, "GET", "/api/workers/w-cpu")[1]["worker"]["status"] == "draining", 10,
               "the worker drained from the page")
    if data.get("actions", {}).get("undrain"):
        page.click("button.undrain[data-worker=w-cpu]", timeout=10_000)
        eventually(lambda: c.api(0, "GET", "/api/workers/w-cpu")[1]["worker"]["status"] == "active", 10,
                   "the worker undrained from the page")
    page.click(f"button.queue-toggle[data-queue={QUEUE}][data-verb=pause]")
    eventually(lambda: c.api(0, "GET", f"/api/queues/{QUEUE}")[1]["queue"]["paused"] is True, 10,
               "the queue paused from the page")
    page.wait_for_selector(f"button.queue-toggle[data-queue={QUEUE}][data-verb=resume]", timeout=10_000)
    assert page.inner_text(f"{row} td:nth-child(2)") == "yes"
    assert c.api(0, "GET", "/api/queues/default")[1]["queue"]["paused"] is False, "only that queue paused"
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)
    page.click(f"button.queue-toggle[data-queue={QUEUE}][data-verb=resume]")
    eventually(lambda: c.api(0, "GET", f"/api/queues/{QUEUE}")[1]["queue"]["paused"] is False, 10,
               "the queue resumed from the page")
    for name in ("dashboard-jobs.png", "dashboard-job.png"):
        shot = ARTIFACTS / name
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    renders = _renders(page)
    (ARTIFACTS / "dashboard-renders.json").write_text(json.dumps({"setup_s": round(setup_s, 1), "renders": renders}))
    log.info("dashboard renders %s total_s=%.1f", renders, time.monotonic() - t0)
