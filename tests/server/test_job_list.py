"""GET /api/jobs' search, sort orders and keyset cursor; a job's graph; the dashboard's rates."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

JOB = {"type": "shell", "payload": {"argv": ["echo", "hi"]}}


async def _submit(client: TestClient, n: int) -> list[str]:
    r = await client.post("/api/jobs/batch", json={"jobs": [{**JOB, "key": f"nightly-{i:03d}"} for i in range(n)]})
    assert r.status == 201, await r.text()
    return list((await r.json())["job_ids"])


async def _all_pages(client: TestClient, query: str, limit: int) -> tuple[list[str], list[dict[str, Any]]]:
    ids: list[str] = []
    pages = []
    cursor = None
    for _ in range(100):
        r = await client.get(f"/api/jobs?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert r.status == 200, await r.text()
        page = await r.json()
        pages.append(page)
        ids += [j["job_id"] for j in page["jobs"]]
        cursor = page["cursor"]
        if cursor is None:
            return ids, pages
    raise AssertionError("paging did not end")


async def test_every_sort_pages_over_all_jobs_once(client: TestClient) -> None:
    ids = await _submit(client, 23)
    for sort in ("created", "-created", "duration", "-duration", "worker", "-worker", "attempts", "-attempts"):
        seen, pages = await _all_pages(client, f"sort={sort}", 5)
        assert sorted(seen) == sorted(ids), sort
        assert len(pages) == 5 and {p["total"] for p in pages} == {23}
        if sort in ("created", "-created"):
            assert seen == (ids if sort == "created" else ids[::-1])


async def test_newest_first_with_after_keeps_the_seq_cursor(client: TestClient) -> None:
    ids = await _submit(client, 12)
    r = await client.get("/api/jobs?order=newest&limit=5")
    first = await r.json()
    assert [j["job_id"] for j in first["jobs"]] == ids[::-1][:5] and first["next"] is not None
    r = await client.get(f"/api/jobs?order=newest&limit=5&after={first['next']}")
    assert [j["job_id"] for j in (await r.json())["jobs"]] == ids[::-1][5:10]


async def test_search_finds_a_job_by_key_or_id(client: TestClient) -> None:
    ids = await _submit(client, 30)
    r = await client.get("/api/jobs?q=NIGHTLY-017")
    body = await r.json()
    assert [j["job_id"] for j in body["jobs"]] == [ids[17]] and body["total"] == 1
    r = await client.get(f"/api/jobs?q={ids[4][:10]}&status=pending")
    assert ids[4] in [j["job_id"] for j in (await r.json())["jobs"]]
    r = await client.get("/api/jobs?q=nightly-01&sort=-created&limit=3")
    body = await r.json()
    assert body["total"] == 10 and [j["key"] for j in body["jobs"]] == ["nightly-019", "nightly-018", "nightly-017"]
    r = await client.get("/api/jobs?queue=default&type=shell")
    assert (await r.json())["total"] == 30
    r = await client.get("/api/jobs?queue=gpu")
    assert (await r.json())["total"] == 0


async def test_a_cursor_of_another_sort_is_refused(client: TestClient) -> None:
    await _submit(client, 6)
    r = await client.get("/api/jobs?sort=worker&limit=2")
    cursor = (await r.json())["cursor"]
    r = await client.get(f"/api/jobs?sort=attempts&cursor={cursor}")
    assert r.status == 400 and (await r.json())["error"]["code"] == "BAD_QUERY"


async def test_graph_shows_dependencies_and_dependents(client: TestClient) -> None:
    r = await client.post("/api/jobs/batch", json={"group": "g-graph", "jobs": [
        {**JOB, "name": "fetch"}, {**JOB, "name": "build", "depends_on": ["fetch"]},
        {**JOB, "name": "test", "depends_on": ["build"]}, {**JOB, "name": "docs", "depends_on": ["fetch"]}]})
    assert r.status == 201, await r.text()
    fetch, build, test, docs = (await r.json())["job_ids"]
    r = await client.get(f"/api/jobs/{build}/graph")
    g = await r.json()
    assert {n["name"]: n["level"] for n in g["nodes"]} == {"fetch": -1, "build": 0, "test": 1}
    assert g["edges"] == sorted([[fetch, build], [build, test]]) and g["group_id"] == "g-graph"
    r = await client.get(f"/api/jobs/{fetch}/graph?depth=1")
    g = await r.json()
    assert {n["name"] for n in g["nodes"]} == {"fetch", "build", "docs"} and g["truncated"] is True


async def test_dashboard_counts_submissions_in_its_rates(client: TestClient) -> None:
    await _submit(client, 7)
    r = await client.get("/api/dashboard")
    body = await r.json()
    points = body["rates"]["points"]
    assert len(points) == body["rates"]["window_s"] // body["rates"]["bucket_s"]
    assert sum(p["submitted_per_s"] for p in points) * body["rates"]["bucket_s"] == 7
    assert body["actions"] == {"undrain": True, "queue_pause": True} and body["health"]["status"] in ("healthy", "degraded")
    assert body["replicas"][0]["lag"] == 0
