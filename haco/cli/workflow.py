"""The workflow file of `haco run` and `haco schedule create -f` (YAML or JSON; docs/workflows.md).

    group: nightly-2026-12-02        # optional; a fresh id otherwise (a rerun of the file is new)
    defaults:                        # merged into every job; a job's own fields win, labels merge
      type: shell
      timeout_s: 600
      labels: {suite: nightly}
    jobs:                            # a mapping name -> job, or a list of jobs that carry `name`
      build:
        argv: [make]                 # shorthand: payload {"argv": [...]} (type shell by default)
      test:
        argv: [make, test]
        depends_on: [build]          # names of this file's jobs, or ids of jobs already submitted

Turned into the API's list form: [{"name": ..., <job fields>}, ...]. No server code here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FILE_FIELDS = frozenset({"group", "defaults", "jobs"})


class WorkflowError(ValueError):
    """A workflow file that cannot be read or has the wrong shape."""


def load(path: str) -> dict[str, Any]:
    """The file's {"group": str | None, "jobs": [job, ...]}; raises WorkflowError."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise WorkflowError(f"cannot read {path}: {exc.strerror}") from None
    if path.endswith(".json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowError(f"{path} is not JSON: {exc}") from None
    else:
        import yaml  # only for this command
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WorkflowError(f"{path} is not YAML: {exc}") from None
    return normalize(doc, path)


def normalize(doc: Any, where: str = "workflow") -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise WorkflowError(f"{where}: the top level must be a mapping with `jobs`")
    unknown = sorted(set(doc) - FILE_FIELDS)
    if unknown:
        raise WorkflowError(f"{where}: unknown field {unknown[0]!r} (fields: group, defaults, jobs)")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise WorkflowError(f"{where}: defaults must be a mapping")
    raw = doc.get("jobs")
    if isinstance(raw, dict):
        items = [{"name": str(name), **(job or {})} if isinstance(job, dict) or job is None else job
                 for name, job in raw.items()]
    elif isinstance(raw, list):
        items = raw
    else:
        raise WorkflowError(f"{where}: jobs must be a mapping of name to job, or a list")
    if not items:
        raise WorkflowError(f"{where}: no jobs")
    jobs = []
    for i, job in enumerate(items):
        if not isinstance(job, dict):
            raise WorkflowError(f"{where}: job {i} must be a mapping")
        jobs.append(_job(defaults, job))
    group = doc.get("group")
    if group is not None and not isinstance(group, str):
        raise WorkflowError(f"{where}: group must be a string")
    return {"group": group, "jobs": jobs}


def _job(defaults: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    merged = {**defaults, **job}
    if isinstance(defaults.get("labels"), dict) and isinstance(job.get("labels"), dict):
        merged["labels"] = {**defaults["labels"], **job["labels"]}
    argv = merged.pop("argv", None)
    if argv is not None:
        merged.setdefault("type", "shell")
        merged["payload"] = {"argv": [str(a) for a in argv]} if isinstance(argv, list) else argv
    merged.setdefault("type", "shell")
    for field in ("not_before", "deadline"):  # YAML reads an unquoted time as a datetime
        value = merged.get(field)
        if value is not None and not isinstance(value, str) and hasattr(value, "isoformat"):
            merged[field] = value.isoformat()
    return merged
