"""Hardware detection: the nvidia-smi parser on captured output, and detect() for real on this machine."""

from __future__ import annotations

import os
import platform
import shutil

import psutil
import pytest

from haco.worker.hardware import Capabilities, Gpu, detect, parse_nvidia_smi

# Captured from `nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader,nounits`.
TWO_GPUS = "NVIDIA A100-SXM4-40GB, 40960, 8.0\nNVIDIA GeForce RTX 3090, 24576, 8.6\n"
T4 = "Tesla T4, 15360, 7.5\n"
NOT_SUPPORTED = "NVIDIA GeForce GTX 1080, [N/A], [Not Supported]\n"


def test_parse_reads_name_memory_and_compute_capability() -> None:
    assert parse_nvidia_smi(TWO_GPUS) == (
        Gpu("NVIDIA A100-SXM4-40GB", 40.0, 8.0),
        Gpu("NVIDIA GeForce RTX 3090", 24.0, 8.6, 1),  # no index column: indexed in order
    )
    assert parse_nvidia_smi(T4) == (Gpu("Tesla T4", 15.0, 7.5),)


def test_parse_keeps_commas_in_names_and_reads_unsupported_fields_as_zero() -> None:
    assert parse_nvidia_smi("Weird, Inc. GPU, 1024, 9.0\n") == (Gpu("Weird, Inc. GPU", 1.0, 9.0),)
    assert parse_nvidia_smi(NOT_SUPPORTED) == (Gpu("NVIDIA GeForce GTX 1080", 0.0, 0.0),)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "No devices were found\n",
        'Field "compute_cap" is not a valid field to query.\n',
        ", 1024, 8.0\n",
    ],
)
def test_parse_skips_lines_it_cannot_read(text: str) -> None:
    assert parse_nvidia_smi(text) == ()


def test_parse_ignores_blank_and_bad_lines_between_good_ones() -> None:
    assert parse_nvidia_smi("\n" + T4 + "garbage\n  \n") == (Gpu("Tesla T4", 15.0, 7.5),)


def test_detect_on_this_machine_reports_its_resources(tmp_path: os.PathLike[str]) -> None:
    caps = detect(tmp_path)
    assert isinstance(caps, Capabilities)
    assert 1 <= caps.cpus <= (psutil.cpu_count(logical=True) or 1)
    assert 0 < caps.memory_gb <= psutil.virtual_memory().total / 1024**3 + 0.01
    assert caps.disk_free_gb == pytest.approx(shutil.disk_usage(tmp_path).free / 1024**3, abs=1.0)
    assert platform.machine().lower() in caps.hardware
    if shutil.which("nvidia-smi") is None:  # this machine and CI have no GPU
        assert caps.gpus == ()
        assert caps.cuda_compute == 0.0
        assert "cuda" not in caps.hardware and "gpu" not in caps.hardware
    else:
        assert caps.cuda_compute == max((g.compute_cap for g in caps.gpus), default=0.0)
        assert ("cuda" in caps.hardware) == bool(caps.gpus)
