"""The Raft layer is one package: nothing else reaches into its internals, nothing imports pysyncobj."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAFT = ROOT / "haco" / "replica" / "raft"


def _sources() -> list[Path]:
    return sorted(p for d in ("haco", "raft_state", "chaos") for p in (ROOT / d).rglob("*.py"))


def test_nothing_outside_the_raft_package_touches_its_internals() -> None:
    bad = re.compile(r"_SyncObj__|getsource|sha256")
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _sources() if RAFT not in p.parents
            for n, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    # sha256 is fine where it hashes data, not source: the security package and the job log names
    hits = [h for h in hits if not h.startswith(("haco/security/", "haco/worker/", "haco/server/auth"))]
    assert hits == []


def test_no_pysyncobj_import_and_no_pickle_on_the_raft_path() -> None:
    imports = [str(p.relative_to(ROOT)) for p in _sources()
               if re.search(r"^\s*(import|from)\s+pysyncobj", p.read_text(), re.M)]
    assert imports == []
    # the fork's only pickle reader is legacy.py (the previous release's files on this disk, restricted)
    unpickling = sorted(str(p.relative_to(ROOT)) for p in RAFT.rglob("*.py") if re.search(r"pickle\.", p.read_text()))
    assert unpickling == ["haco/replica/raft/legacy.py"], unpickling
    node = (ROOT / "haco" / "replica" / "node.py").read_text()
    assert "pickle" not in node.replace("pickled", "")


def test_the_fork_carries_its_licence_and_its_patch_list() -> None:
    assert "MIT License" in (RAFT / "LICENSE.txt").read_text()
    patches = (RAFT / "PATCHES.md").read_text()
    for section in ("wire", "commit", "nextIndex", "drain", "stream", "election", "fsync", "handover"):
        assert section in patches, section
