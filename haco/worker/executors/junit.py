"""Read a pytest JUnit XML report into counts and failing test ids.

Pytest runs with `-o junit_family=xunit1` so each testcase carries its `file`; the id is rebuilt as
pytest's node id (`path/test_x.py::TestClass::test_name[param]`). Without `file` (a user override
of the family) the id falls back to `classname::name`.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(slots=True)
class JunitSummary:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    failing: list[str] = field(default_factory=list)  # failed or errored ids, in report order

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "errors": self.errors,
            "failing": list(self.failing),
        }


def parse_junit(path: Path) -> JunitSummary:
    """Counts per testcase: failure beats error beats skipped; anything else passed.

    Raises OSError when the file is missing and ET.ParseError when it is not XML.
    """
    summary = JunitSummary()
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = _outcome(case)
        if outcome == "failed":
            summary.failed += 1
        elif outcome == "errors":
            summary.errors += 1
        elif outcome == "skipped":
            summary.skipped += 1
        else:
            summary.passed += 1
        node_id = _node_id(case)
        if outcome in ("failed", "errors") and node_id not in summary.failing:
            summary.failing.append(node_id)
    return summary


def _outcome(case: ET.Element) -> str:
    tags = {child.tag for child in case}
    if "failure" in tags:
        return "failed"
    if "error" in tags:
        return "errors"
    if "skipped" in tags:
        return "skipped"
    return "passed"


def _node_id(case: ET.Element) -> str:
    classname = case.get("classname", "")
    name = case.get("name", "")
    file = case.get("file")
    if file is None:
        return f"{classname}::{name}" if classname else name
    if not classname:  # a collection error: the testcase stands for the whole file
        return file
    module = file.removesuffix(".py").replace("/", ".").replace("\\", ".")
    classes = classname.removeprefix(module).lstrip(".")
    return "::".join(part for part in (file, *classes.split("."), name) if part)


_COUNT_RE = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|warnings?|deselected)\b")
_SUMMARY_RE = re.compile(r"^=*\s*(\d+ (passed|failed|skipped|errors?|xfailed|xpassed|deselected).*) in [\d.]+s")


def parse_summary_line(text: str) -> JunitSummary | None:
    """Counts from pytest's final summary line (`1 failed, 1 passed in 0.12s`, `-q` or not), the
    fallback when no JUnit report was written; None when `text` has no such line. No failing ids:
    the line does not carry them."""
    for line in reversed(text.strip().splitlines()):
        match = _SUMMARY_RE.match(line.strip())
        if match is None:
            continue
        summary = JunitSummary()
        for number, word in _COUNT_RE.findall(match.group(1)):
            if word == "passed":
                summary.passed += int(number)
            elif word == "failed":
                summary.failed += int(number)
            elif word == "skipped":
                summary.skipped += int(number)
            elif word in ("error", "errors"):
                summary.errors += int(number)
        return summary
    return None
