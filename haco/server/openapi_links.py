"""The OpenAPI document's links: which answer feeds which next call, so a client (or Schemathesis'
stateful run) can chain submit, get, cancel, retry, logs, and a worker's drain and undrain.

`LINKS` maps an operation (method, path) to the links of its success answers; `document()` puts
them on every 2xx response of that operation. A link names its target by operationId
(`"{method}:{path}"`, as `op()` makes them) and takes the target's parameters, or its body, from
the answer with OpenAPI runtime expressions. tests/server/test_openapi.py checks that every
target exists and every parameter is one the target takes.
"""

from __future__ import annotations

import copy
from typing import Any, Final

_JOB: Final = "/api/jobs/{job_id}"
_WORKER: Final = "/api/workers/{worker_id}"


def _to_job(source: str) -> dict[str, dict[str, Any]]:
    """Links from an answer that names one job at the JSON pointer `source`."""
    job_id = f"$response.body#{source}"
    return {
        "GetJob": {"operationId": f"get:{_JOB}", "parameters": {"path.job_id": job_id},
                   "description": "the job, with its attempts and why it is pending"},
        "CancelJob": {"operationId": f"post:{_JOB}/cancel", "parameters": {"path.job_id": job_id},
                      "description": "cancel it"},
        "RetryJob": {"operationId": "post:/api/jobs/retry", "requestBody": {"job_ids": [job_id]},
                     "description": "run it again once it failed, was cancelled or expired"},
        "JobLogs": {"operationId": f"get:{_JOB}/logs", "parameters": {"path.job_id": job_id},
                    "description": "its latest attempt's output"},
    }


def _to_worker(source: str) -> dict[str, dict[str, Any]]:
    """Links from an answer that names one worker at the JSON pointer `source`."""
    worker_id = f"$response.body#{source}"
    return {
        "GetWorker": {"operationId": f"get:{_WORKER}", "parameters": {"path.worker_id": worker_id},
                      "description": "the worker"},
        "DrainWorker": {"operationId": f"post:{_WORKER}/drain", "parameters": {"path.worker_id": worker_id},
                        "description": "drain it: it finishes its jobs and takes no more"},
        "UndrainWorker": {"operationId": f"post:{_WORKER}/undrain", "parameters": {"path.worker_id": worker_id},
                          "description": "let it take jobs again"},
    }


LINKS: Final[dict[tuple[str, str], dict[str, dict[str, Any]]]] = {
    ("post", "/api/jobs"): _to_job("/job_id"),
    ("post", "/api/jobs/batch"): _to_job("/job_ids/0"),
    ("get", _JOB): _to_job("/job/job_id"),
    ("post", f"{_JOB}/cancel"): _to_job("/job_id"),
    ("post", "/api/jobs/retry"): _to_job("/retried/0"),
    ("get", "/api/workers"): _to_worker("/workers/0/worker_id"),
    ("get", _WORKER): _to_worker("/worker/worker_id"),
    ("post", f"{_WORKER}/drain"): _to_worker("/worker_id"),
    ("post", f"{_WORKER}/undrain"): _to_worker("/worker_id"),
}


def add_links(paths: dict[str, dict[str, Any]]) -> None:
    """Put `LINKS` on the 2xx responses of their operations in `paths` (the document's)."""
    for (method, path), links in LINKS.items():
        for status, response in paths[path][method]["responses"].items():
            if status.startswith("2"):
                response["links"] = copy.deepcopy(links)


__all__ = ["LINKS", "add_links"]
