"""A replica of the previous release (stock pysyncobj wire) and replicas of this one refuse each
other with a clear log line; the new majority serves; restarted on this release, the third joins.

The previous release is taken from git (commit PREVIOUS_RELEASE) into a temporary directory."""

from __future__ import annotations

import subprocess
import tarfile
import io
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, eventually, http

PREVIOUS_RELEASE = "2a45859"
ROOT = Path(__file__).resolve().parents[2]


def previous_release(dest: Path) -> Path:
    try:
        raw = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "haco", "raft_state"],
                             check=True, capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"needs a git checkout with commit {PREVIOUS_RELEASE}")
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def test_previous_release_replica_is_refused_and_rejoins_once_upgraded(tmp_path: Path) -> None:
    old_tree = previous_release(tmp_path / "old")
    (tmp_path / "c").mkdir()
    c = Cluster(tmp_path / "c", 3)
    try:
        c.start(0)
        c.start(1)
        c.extra_env = {"PYTHONPATH": str(old_tree), "PYTHONSAFEPATH": "1"}  # not the working tree
        c.start(2)
        c.extra_env = {}
        # the new pair elects; the old replica is never counted in
        eventually(lambda: {c.info(0)["leader"], c.info(1)["leader"]} <= {c.nodes[0].id, c.nodes[1].id}
                   and c.info(0)["leader"] is not None and c.info(0)["leader"] == c.info(1)["leader"], 30,
                   "a leader among the new replicas")
        status, body = http("POST", c.nodes[0].url + "/api/jobs", {"type": "noop", "payload": {}, "key": "mixed"})
        assert status in (200, 201), body

        def refusal_logged() -> bool:
            text = c.nodes[0].log_path.read_text() + c.nodes[1].log_path.read_text()
            return "previous release's Raft wire" in text or "did not answer the handshake" in text
        eventually(refusal_logged, 20, "a new replica logged the refusal")
        status, old_info = http("GET", c.nodes[2].url + "/api/cluster")
        assert status == 200 and old_info["leader"] is None and old_info["applied_index"] == 0, old_info
        # the documented procedure for that replica: stop it, start it on this release
        c.kill(2)
        c.start(2)
        info = c.converged(40)
        assert info["applied_index"] >= body["index"]
    finally:
        c.stop()
