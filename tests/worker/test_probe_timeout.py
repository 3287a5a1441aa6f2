"""A hanging nvidia-smi (a wrapper whose child holds the pipe) costs the worker its probe timeout, no
more, and leaves it without devices; garbage output gives none either (docs/resources.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from haco.worker.hardware import Overrides, detect


def _fake(tmp: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp}:{os.environ.get('PATH', '')}")


def test_hanging_nvidia_smi_costs_the_probe_timeout_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, "sleep 30", monkeypatch)
    started = time.monotonic()
    caps = detect(tmp_path, Overrides(probe_timeout_s=1.0))
    assert time.monotonic() - started < 3.0
    assert caps.gpus == () and caps.cpus >= 1


def test_garbage_gives_no_devices_and_flags_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, "echo 'this is not csv'", monkeypatch)
    assert detect(tmp_path).gpus == ()
    _fake(tmp_path, 'echo "0, NVIDIA A10G, 24564, 8.6"; echo "1, NVIDIA A10G, 24564, 8.6"', monkeypatch)
    caps = detect(tmp_path, Overrides(cpus=4, memory_gb=6.0, reserve_cpus=1, gpus=(1,)))
    assert (caps.cpus, caps.memory_gb, [g.index for g in caps.gpus]) == (3, 6.0, [1])
    assert detect(tmp_path, Overrides(gpus=())).gpus == ()
