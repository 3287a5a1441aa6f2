"""The REST API fuzzed with Schemathesis over its own OpenAPI document, against three real replicas.

Every operation of haco/server/openapi.py gets positive and negative cases (bodies, query and path
parameters the document allows, and ones it does not), sent with an admin token to the replicas in
turn (followers forward some reads to the leader). Each answer must: not be a 5xx; carry no
traceback; have a status the document lists for the operation and, for JSON, the documented shape
(an error's code among that status's codes). A refused write (4xx) must leave the state digest of
the replica that answered unchanged. After the run, no replica logged a line at level ERROR.

Then call sequences: Schemathesis' state machine chains operations through the document's links
(haco/server/openapi_links.py: submit, get, cancel, retry, logs; a worker's get, drain, undrain),
feeding each answer's ids into the next call, with the same checks on every answer but the digest
(a sequence's accepted writes move it). An idle worker (capacity 0, so no generated job ever runs)
gives drain and undrain something to act on. It runs last: the cluster stays quiet until then.

Bounded for the suite (FUZZ_EXAMPLES per operation and mode: ~2,000 requests, 20-25 s at load 3 on a
two-core machine; SEQUENCES sequences of at most SEQUENCE_STEPS calls); the longer run is
`HACO_FUZZ_EXAMPLES=500 HACO_FUZZ_SEQUENCES=1000 python -m pytest tests/integration/test_fuzz_api.py`
(docs/security.md). The cluster is quiet on its own (no workers, Ticks an hour apart, schedules
paused as soon as they exist), so a digest that moves during a refused write was moved by it.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from haco.server.openapi import document

from .cluster import Cluster
from .idle_worker import IdleWorker

FUZZ_EXAMPLES = int(os.environ.get("HACO_FUZZ_EXAMPLES", "3"))
SEQUENCES = int(os.environ.get("HACO_FUZZ_SEQUENCES", "150"))
SEQUENCE_STEPS = int(os.environ.get("HACO_FUZZ_SEQUENCE_STEPS", "12"))
#: the two parameters that wait by design (?wait_s long-polls to 60 s, ?min_index up to 10 s):
#: tests/server/test_routes.py covers them; here they would spend the run's time asleep
_WAITING = {"wait_s", "min_index"}
#: membership changes are tested in their own files: fuzzed, an add probes whatever host it is given
#: (no network but loopback here) and a removal could take the cluster under test apart
_SKIPPED = {("post", "/api/members"), ("delete", "/api/members/{member_id}")}


def _fuzz_document() -> dict[str, Any]:
    doc = document()
    for path, item in doc["paths"].items():
        for method in [m for m in item if (m, path) in _SKIPPED]:
            del item[method]
        for operation in item.values():
            if "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"] if p["name"] not in _WAITING]
    return doc


#: what sequences submit: noop jobs (never run: the only worker has capacity 0) with the fields a
#: schema bounds; the document's `type` is open (executors are plugins), so a generated one is
#: almost always unknown, and dependencies, deadlines and names are almost always refused
_SEQUENCE_JOB_FIELDS = {"payload", "priority", "timeout_s", "max_retries", "backoff_s", "required_tags", "key",
                        "labels"}


def _sequence_document() -> dict[str, Any]:
    """The fuzz document for call sequences: submits that are accepted, and no deregistration
    (it would take away the worker that drain and undrain act on)."""
    doc = _fuzz_document()
    new_job = doc["components"]["schemas"]["NewJob"]
    new_job["properties"] = {"type": {"const": "noop"}, **{k: v for k, v in new_job["properties"].items()
                                                           if k in _SEQUENCE_JOB_FIELDS}}
    del doc["paths"]["/api/workers/{worker_id}"]["delete"]
    return doc


def _schema(doc: dict[str, Any]) -> Any:
    out = schemathesis.openapi.from_dict(doc)
    out.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                 max_examples=FUZZ_EXAMPLES, with_security_parameters=False)
    return out


schema = _schema(_fuzz_document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Live:
    """The cluster under test, the replica each case goes to next, and what the run saw."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {cluster.admin}"
        self.turn = itertools.cycle(range(cluster.size))
        self.digest_checked = 0
        self.calls = 0
        self.call_s = 0.0
        self.index = 0  #: the highest log index an accepted write answered with

    def url(self, i: int) -> str:
        return self.cluster.nodes[i].url

    def info(self, i: int) -> dict[str, Any]:
        r = self.http.get(self.url(i) + "/api/cluster", timeout=5)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def settled(self, i: int) -> dict[str, Any]:
        """`info(i)` once replica i applied every write answered so far: a follower applies a write
        a few ms after the leader answered it, and that would move the digest a refused write is
        checked against."""
        deadline = time.monotonic() + 10
        while (info := self.info(i))["applied_index"] < self.index and time.monotonic() < deadline:
            time.sleep(0.01)
        return info

    def saw(self, response: requests.Response) -> None:
        """Note the index of an accepted write's answer."""
        if response.status_code < 300 and "json" in response.headers.get("Content-Type", ""):
            body = response.json()
            if isinstance(body, dict) and type(body.get("index")) is int:
                self.index = max(self.index, body["index"])

    def pause_schedules(self) -> None:
        """A schedule fires on its own (FireSchedule moves the digest): keep every one paused."""
        self.settled(0)  # it sees the schedule just created elsewhere
        for sc in self.http.get(self.url(0) + "/api/schedules", timeout=5).json()["schedules"]:
            if not sc["paused"]:
                r = self.http.post(f"{self.url(0)}/api/schedules/{sc['schedule_id']}/pause", timeout=10)
                assert r.status_code == 200, r.text
                self.saw(r)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("fuzz")
    cluster = Cluster(root, 3, auth=True, extra_env={"HACO_TICK_INTERVAL_S": "3600"})
    cluster.start_all()
    try:
        cluster.leader(30)
        yield Live(cluster)
    finally:
        cluster.stop()
        errors = _error_lines(root)
        assert not errors, "replicas logged errors during the fuzz run:\n" + "\n".join(errors[:20])


def _error_lines(root: Path) -> list[str]:
    out = []
    for path in sorted(root.glob("r*.log")):
        out += [f"{path.name}: {line[:2000]}" for line in path.read_text(errors="replace").splitlines()
                if "level=ERROR" in line or "level=CRITICAL" in line or line.startswith("Traceback")]
    return out


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate],
          database=None, derandomize=True)
def test_every_operation_holds_its_contract(case: schemathesis.Case, live: Live) -> None:
    i = next(live.turn)
    writes = case.method.upper() != "GET"
    before = live.settled(i) if writes else None
    started = time.monotonic()
    response = case.call(base_url=live.url(i), session=live.http, timeout=30)
    live.calls, live.call_s = live.calls + 1, live.call_s + time.monotonic() - started
    live.saw(response)
    case.validate_response(response, checks=CHECKS)
    text = response.content.decode("utf-8", errors="replace")  # GET /api/snapshot answers a binary file
    assert "Traceback" not in text and 'File "' not in text, text[:2000]
    if writes and 400 <= response.status_code < 500 and before is not None:
        after = live.info(i)
        if after["cluster_version"] == before["cluster_version"]:  # a version step is kept even when refused
            assert after["digest"] == before["digest"], \
                f"refused {case.method} {case.path} ({response.status_code}) changed the state: {response.text[:500]}"
            live.digest_checked += 1
    elif writes and response.status_code < 300 and case.path.startswith("/api/schedules"):
        live.pause_schedules()


def test_refused_writes_were_checked(live: Live) -> None:
    """The run above is not all GETs and accepted writes: refused writes had their digest compared."""
    print(f"fuzz: {live.calls} requests, {live.call_s:.1f} s waiting for answers, {live.digest_checked} refused "
          "writes with the digest compared")
    assert live.digest_checked >= 20, live.digest_checked


#: the hostile inputs generated cases do not reach by themselves (huge numbers as integers, lone
#: surrogates, a body that is not what its Content-Encoding says, SQL values Python cannot hold),
#: sent through the same checks: each once answered 500
_PROBES: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("POST", "/api/jobs", b'{"type": "noop", "timeout_s": 1' + b"0" * 4299 + b"}", {}),
    ("POST", "/api/jobs", b'{"type": "noop", "backoff_s": 1' + b"0" * 400 + b"}", {}),
    ("POST", "/api/jobs", b'{"type": "noop", "payload": {"k": ["x", "\\ud800"]}}', {}),
    ("POST", "/api/jobs", b'{"type": "noop", "payload": "\xed\xa0\x80"}', {}),
    ("POST", "/api/jobs", b'{"type": "noop"}', {"Content-Encoding": "gzip"}),
    ("POST", "/api/results/query", b'{"sql": "SELECT \'\\ud800\'"}', {}),
    ("POST", "/api/results/query", b'{"sql": "SELECT \'infinity\'::DATE AS d, \'-infinity\'::TIMESTAMP AS t"}', {}),
    ("POST", "/api/results/query", b'{"sql": "SELECT \'200000-01-01\'::DATE AS d"}', {}),
    ("POST", "/api/results/query", b'{"sql": "SELECT list(range(1e7))"}', {}),
    ("POST", "/api/results/query", b'{"sql": "SELECT * FROM range(100000) a, range(100000) b"}', {}),
]


@pytest.mark.parametrize(("method", "path", "raw", "headers"), _PROBES, ids=[f"{m} {p} #{n}" for n, (m, p, _, _)
                                                                              in enumerate(_PROBES)])
def test_hostile_probes_hold_the_contract(live: Live, method: str, path: str, raw: bytes,
                                          headers: dict[str, str]) -> None:
    case = schema[path][method].Case(body={})
    before = live.settled(0)
    response = live.http.request(method, live.url(0) + path, data=raw, timeout=30,
                                 headers={"Content-Type": "application/json", **headers})
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500 and "Traceback" not in response.text, response.text[:2000]
    if response.status_code >= 400 and live.info(0)["cluster_version"] == before["cluster_version"]:
        assert live.info(0)["digest"] == before["digest"]


#: each answered 2xx at least once: only a sequence through the links reaches cancel and retry with
#: a real job's id, and drain and undrain with the worker's
_FOLLOWED = {("POST", "/api/jobs"), ("GET", "/api/jobs/{job_id}"), ("POST", "/api/jobs/{job_id}/cancel"),
             ("POST", "/api/jobs/retry"), ("POST", "/api/workers/{worker_id}/drain"),
             ("POST", "/api/workers/{worker_id}/undrain")}


def test_call_sequences_hold_the_contract(live: Live) -> None:
    """Sequences through the links: every answer holds the contract, and the links were followed
    (a submitted job got, cancelled and retried by its id; the idle worker drained).

    Hypothesis replays a sequence now and then (to report one, or where its data tree says a
    choice was seen before); the live cluster's state has moved on meanwhile, so the replay may
    draw differently and Hypothesis stops with Flaky. As Schemathesis' own runner does, that is no
    failure by itself: a failed check is recorded when it happens, and the remaining sequences run
    on with another seed."""
    seen: collections.Counter[tuple[str, str, int]] = collections.Counter()
    failures: list[str] = []
    finished = 0

    class Sequences(_schema(_sequence_document()).as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            # read your writes, as a client does: the next replica has applied what was answered so
            # far (a follower applies a write a few ms after the leader answers it, and a cancel or
            # retry of a job it has not applied yet is a 404 that no link-following can avoid)
            i = next(live.turn)
            live.settled(i)
            return {"base_url": live.url(i), "session": live.http, "timeout": 30}

        def validate_response(self, response: Any, case: schemathesis.Case, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            seen[(case.method.upper(), case.path, response.status_code)] += 1
            live.saw(response)
            text = response.content.decode("utf-8", errors="replace")
            try:
                case.validate_response(response, checks=CHECKS)
                assert "Traceback" not in text and 'File "' not in text, text[:2000]
            except (AssertionError, FailureGroup) as exc:
                failures.append(f"{case.method} {case.path} {response.status_code} {text[:300]}: {exc}")
                raise

        def teardown(self) -> None:
            nonlocal finished
            finished += 1
            super().teardown()

    started = time.monotonic()
    with IdleWorker(live.cluster, "idle-1"):
        for run in range(5):
            left = SEQUENCES - finished
            if left <= 0 or failures:
                break
            machine = Sequences if run == 0 else hypothesis.seed(run)(Sequences)
            try:
                machine.run(settings=settings(max_examples=left, stateful_step_count=SEQUENCE_STEPS, deadline=None,
                                              suppress_health_check=list(HealthCheck), database=None,
                                              derandomize=run == 0, phases=[Phase.generate]))
            except Flaky:
                continue
    print(f"sequences: {finished} ({sum(seen.values())} requests) in {time.monotonic() - started:.1f} s; "
          + ", ".join(f"{m} {p} {s}: {n}" for (m, p, s), n in sorted(seen.items())))
    assert not failures, "\n".join(failures[:5])
    accepted = {(method, path) for method, path, status in seen if 200 <= status < 300}
    assert _FOLLOWED <= accepted, f"no sequence got these accepted: {sorted(_FOLLOWED - accepted)}"
