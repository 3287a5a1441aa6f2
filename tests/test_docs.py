"""The docs keep up with the code: every job field the validator accepts is documented, the README
stays a front page, and every relative link in the docs points at a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

from raft_state import validate

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_every_job_field_the_validator_accepts_is_in_jobs_md() -> None:
    text = (ROOT / "docs" / "jobs.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", text, re.M))
    accepted = set(validate.JOB_FIELDS) | {f"requirements.{f}" for f in validate.REQUIREMENT_FIELDS}
    missing = sorted(accepted - documented)
    assert not missing, f"docs/jobs.md does not document: {missing}"


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; reference material belongs in docs/"


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for path in [ROOT / "README.md", *DOCS, *ROOT.glob("*/**/DESIGN.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_nothing_refers_outside_the_repository() -> None:
    offenders = []
    for path in [ROOT / "README.md", *DOCS, *(p for d in ("haco", "raft_state", "chaos") for p in (ROOT / d).rglob("*"))]:
        if path.is_file() and path.suffix in {".py", ".md", ".html", ".js"}:
            if "../shared" in path.read_text(errors="replace"):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders
