from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster


@pytest.fixture
def cluster_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    made: list[Cluster] = []

    def make(size: int = 3, start: bool = True) -> Cluster:
        c = Cluster(tmp_path / f"c{len(made)}", size)
        made.append(c)
        if start:
            c.start_all()
        return c
    (tmp_path / "c0").mkdir(exist_ok=True)
    for i in range(1, 4):
        (tmp_path / f"c{i}").mkdir(exist_ok=True)
    yield make
    failed = getattr(request.node, "rep_call", None)
    for c in made:
        c.stop()
        if failed is not None and failed.failed:
            print(c.dump_logs())


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright: the distribution's browser (`.ci/run` installs it),
    never one Playwright downloads. Skips without either."""
    if CHROMIUM is None:
        pytest.skip("needs chromium (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[test]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()
