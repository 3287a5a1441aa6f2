"""Hypothesis strategies for hostile API requests and worker-protocol frames (test_fuzz.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import strategies as st

TOKEN_KINDS = ("none", "garbage", "expired", "forged", "reader", "submitter", "admin", "worker")
METHODS = ("GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS")
TEMPLATES = (
    "/api/jobs", "/api/jobs/batch", "/api/jobs/{id}", "/api/jobs/{id}/cancel", "/api/workers", "/api/workers/{id}",
    "/api/workers/{id}/drain", "/api/workers/connect", "/api/queue/stats", "/api/queue/pause",
    "/api/queue/resume", "/api/cluster", "/api/health", "/api/health/ready", "/api/health/db",
    "/api/results/query", "/api/tokens/revoke", "/metrics", "/", "/api/dashboard", "/api/{id}", "/{id}",
)
HOSTILE_SQL = (
    "COPY (SELECT 1) TO '/tmp/x.csv'", "ATTACH '/tmp/evil.db' AS e", "INSTALL httpfs", "LOAD httpfs",
    "SELECT * FROM read_csv_auto('/etc/passwd')", "SELECT * FROM read_text('/etc/shadow')",
    "CREATE TABLE t AS SELECT 1", "DROP TABLE results", "SELECT 1; SELECT 2", "PRAGMA database_list",
    "SET threads=64", "SELECT * FROM 'http://127.0.0.1:1/x.parquet'", "SELECT getenv('HOME')",
    "UPDATE results SET job_id = 'x'", "DELETE FROM results", "SELECT", "SELECT * FROM nowhere",
    "SELECT 1 /*", "EXPORT DATABASE '/tmp/dump'", "CALL pragma_version()", "SELECT * FROM duckdb_settings()",
    "SELECT * FROM glob('/*')", "SELECT current_setting('memory_limit')", "\x00", "",
)
RAW_BODIES = (
    b"[" * 60 + b"]" * 60, b"[" * 100_000, b'{"a":' * 50_000, b"1" * 5000, b"\xff\xfe\x00garbage", b"{", b"nul\x00l",
    b'{"type": "shell", "payload": ' + b"[" * 45 + b"]" * 45 + b"}", b'"just a string"', b"NaN", b"-Infinity",
    b'{"jobs": ' + b"[" * 200 + b"]" * 200 + b"}", b"\xef\xbb\xbf{}", b'{"sql": "SELECT 1", "sql": 5}',
)

ids = st.one_of(
    st.text(max_size=40), st.text(alphabet="abcdef0123456789", min_size=32, max_size=32),
    st.sampled_from(["..", "%00", "../../etc/passwd", "connect", "null", " ", "\u202e", "a" * 3000, "-1", "0x10"]),
)
leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=30))
json_values = st.recursive(leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                          max_size=4), max_leaves=6)
hostile_numbers = st.one_of(st.integers(-2**70, 2**70), st.floats(), st.sampled_from([-1, 0, 2**63, 1e308, -0.0]),
                            st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
names = st.one_of(st.lists(st.text(max_size=70), max_size=40), st.text(max_size=5), st.integers(),
                  st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.text(), max_size=2))
job_fields = {
    "type": st.one_of(st.sampled_from(["shell", "noop", "python", "", "A", "x" * 70, "a b"]), json_values),
    "payload": st.one_of(json_values, st.builds(lambda n: {"argv": ["echo", "x" * n]}, st.integers(0, 300_000))),
    "priority": hostile_numbers, "timeout_s": hostile_numbers, "max_retries": hostile_numbers,
    "backoff_s": hostile_numbers, "required_tags": names, "depends_on": names,
    "requirements": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "hardware": names, "min_memory_gb": hostile_numbers, "min_cuda_compute": hostile_numbers,
        "cpus": hostile_numbers, "gpus": hostile_numbers})),
    "deadline": st.one_of(st.text(max_size=30), hostile_numbers, st.sampled_from(["2026-13-45T99:99:99Z", "yesterday"])),
    "key": st.one_of(st.text(max_size=300), hostile_numbers, st.just("k" * 300)),
    "labels": st.one_of(json_values, st.dictionaries(st.text(max_size=70), json_values, max_size=70)),
    "unknown_field": json_values,
}
jobs = st.fixed_dictionaries({}, optional=job_fields)
bodies = st.one_of(
    st.none(), json_values, jobs, st.builds(lambda js: {"jobs": js}, st.lists(jobs, max_size=5)),
    st.builds(lambda sql, lim: {"sql": sql, "limit": lim}, st.one_of(st.sampled_from(HOSTILE_SQL), st.text()),
              hostile_numbers),
    st.fixed_dictionaries({}, optional={"token": json_values, "token_id": json_values, "reason": json_values}),
    st.sampled_from(RAW_BODIES), st.binary(max_size=200),
)
queries = st.dictionaries(
    st.sampled_from(["min_index", "consistency", "status", "limit", "after", "wait_s", "x", "min_index[]"]),
    st.one_of(st.text(max_size=20), st.integers(-10**30, -1).map(str), st.integers(2**62 + 1, 10**30).map(str),
              st.integers(0, 5).map(str), st.sampled_from(["leader", "local", "pending", "nan", "inf", "1e999"])),
    max_size=3)


@dataclass(frozen=True)
class HttpCase:
    method: str
    path: str
    query: dict[str, str]
    token: str
    body: Any  #: None, bytes (sent raw) or a JSON value

    def url(self, base: str) -> str:
        q = urlencode(self.query)
        return base + self.path + ("?" + q if q else "")


ROUTES = (
    ("POST", "/api/jobs"), ("POST", "/api/jobs/batch"), ("GET", "/api/jobs/{id}"), ("POST", "/api/jobs/{id}/cancel"),
    ("GET", "/api/workers/{id}"), ("POST", "/api/workers/{id}/drain"), ("DELETE", "/api/workers/{id}"),
    ("POST", "/api/results/query"), ("POST", "/api/tokens/revoke"), ("GET", "/api/jobs"), ("GET", "/api/workers"),
    ("GET", "/api/queue/stats"), ("POST", "/api/queue/pause"), ("GET", "/api/cluster"), ("GET", "/api/health/db"),
    ("GET", "/api/workers/connect"), ("GET", "/metrics"), ("GET", "/api/dashboard"),
)
#: mostly tokens that get past authentication, so hostile bodies reach validation
tokens = st.sampled_from(("admin", "admin", "admin", "submitter", "submitter", "reader", *TOKEN_KINDS))
targets = st.one_of(
    st.builds(lambda route, id_, token: (*route, id_, token), st.sampled_from(ROUTES), ids, tokens),
    st.tuples(st.sampled_from(METHODS), st.sampled_from(TEMPLATES), ids, tokens))


def http_batch(bodies_: list[Any], targets_: list[tuple[str, str, str, str]], query: dict[str, str]
               ) -> list[HttpCase]:
    """Every drawn body against every drawn target (method, path, id, token): hypothesis draws a few
    hostile parts, the batch combines them, so thousands of requests cost few draws."""
    return [HttpCase(method, template.replace("{id}", quote(id_, safe="")), query if k % 2 else {}, token, body)
            for body in bodies_ for k, (method, template, id_, token) in enumerate(targets_)]


msgpack_ints = st.integers(-2**63, 2**64 - 1)
mp_leaf = st.one_of(st.none(), st.booleans(), msgpack_ints, st.floats(), st.text(max_size=30), st.binary(max_size=30))
mp_values = st.recursive(mp_leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                            max_size=4), max_leaves=6)
frame_kinds = st.sampled_from(["started", "completed", "failed", "heartbeat", "hello", "ack", "welcome", "assign",
                               "cancel", "", "STARTED"]) | st.text(max_size=10).filter(lambda t: t not in
                                                                                             ("draining", "bye"))


def frame_heads(real_job_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """What a report names: kind, job, attempt, request id (never draining/bye, which a worker may send)."""
    job_ids = st.one_of(st.sampled_from(real_job_ids), mp_values, st.text(max_size=300))
    attempts = st.one_of(msgpack_ints, st.integers(-3, 5), st.floats(), st.text(max_size=5), st.none(), mp_values)
    return st.fixed_dictionaries({"t": frame_kinds}, optional={"v": mp_values, "rid": mp_values, "job_id": job_ids,
                                                               "attempt": attempts})


frame_tails = st.fixed_dictionaries({}, optional={
    "result": st.one_of(mp_values, st.builds(lambda n: "r" * n, st.integers(0, 400_000))), "stats": mp_values,
    "error": mp_values, "load": mp_values, "running": mp_values, "worker_id": mp_values})


def batched_reports(real_job_ids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A `reports` frame (the batched protocol): a list of hostile items, each answered in one `acks`."""
    item = st.one_of(mp_values, st.builds(lambda head, tail: {**tail, **head}, frame_heads(real_job_ids), frame_tails))
    return st.builds(lambda items: {"t": "reports", "items": items}, st.lists(item, max_size=8))


def frame_batch(heads: list[dict[str, Any]], tails: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every drawn head with every drawn tail (the head's fields win)."""
    return [{**tail, **head} for head in heads for tail in tails]


first_frames = st.one_of(
    st.binary(max_size=100),
    st.fixed_dictionaries({"t": st.just("hello")}, optional={
        "worker_id": st.one_of(st.text(max_size=200), mp_values), "capacity": mp_values, "tags": mp_values,
        "hardware": mp_values, "memory_gb": mp_values, "cuda_compute": mp_values, "cpus": mp_values,
        "info": mp_values, "running": mp_values}),
    mp_values)
