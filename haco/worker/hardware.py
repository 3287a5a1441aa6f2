"""What this worker machine offers, reported once at worker start and matched by job `requirements`.

`detect()` is synchronous and may take up to NVIDIA_SMI_TIMEOUT_S: call it before the event loop
starts or through `asyncio.to_thread`.

- cpus: CPUs this process may run on (its affinity set), capped by a cgroup CPU quota if any.
- memory_gb: physical memory, capped by a cgroup memory limit if any (cgroup v2 or v1).
- disk_free_gb: free space on the filesystem holding `disk_path` (the worker's data dir).
- hardware: the machine architecture (`platform.machine()`, lower-cased, e.g. "x86_64"), plus
  "gpu" and "cuda" when nvidia-smi reports at least one GPU.
- gpus: from `nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader,nounits`
  when `nvidia-smi` is on PATH. Anything wrong with it (missing, failing, timing out, output we
  cannot read) means no GPUs, logged at debug: a worker without working GPUs must not claim them.
- cuda_compute: the highest compute capability among the GPUs (e.g. 8.6), 0.0 without GPUs.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

log = logging.getLogger(__name__)

NVIDIA_SMI_TIMEOUT_S: Final = 10.0
NVIDIA_SMI_QUERY: Final = ("--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits")
_GIB: Final = 1024**3
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
_NO_LIMIT_BYTES: Final = 1 << 60  # cgroup v1 reports "no limit" as a huge page-rounded number


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    memory_gb: float  # total memory, GiB
    compute_cap: float  # CUDA compute capability, e.g. 8.6; 0.0 when the driver does not say


@dataclass(frozen=True, slots=True)
class Capabilities:
    cpus: int
    memory_gb: float
    disk_free_gb: float
    hardware: tuple[str, ...]
    gpus: tuple[Gpu, ...]
    cuda_compute: float


def detect(disk_path: str | os.PathLike[str] = ".") -> Capabilities:
    """Probe this machine; see the module docstring for what each figure means."""
    gpus = detect_gpus()
    hardware = {platform.machine().lower() or "unknown"}
    if gpus:
        hardware |= {"gpu", "cuda"}
    return Capabilities(
        cpus=_cpus(),
        memory_gb=round(_memory_bytes() / _GIB, 2),
        disk_free_gb=round(shutil.disk_usage(disk_path).free / _GIB, 2),
        hardware=tuple(sorted(hardware)),
        gpus=gpus,
        cuda_compute=max((g.compute_cap for g in gpus), default=0.0),
    )


def detect_gpus() -> tuple[Gpu, ...]:
    """GPUs reported by nvidia-smi; () when it is absent or fails in any way."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        done = subprocess.run(
            [exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi could not run: %s", exc)
        return ()
    if done.returncode != 0:
        log.debug("nvidia-smi exited with %d: %s", done.returncode, done.stderr.strip() or done.stdout.strip())
        return ()
    return parse_nvidia_smi(done.stdout)


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """Parse `name, memory.total [MiB], compute_cap` CSV lines; unreadable lines are skipped.

    The name is everything before the last two commas, so a name containing a comma survives.
    Non-numeric fields such as `[N/A]` or `[Not Supported]` read as 0.0.
    """
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            log.debug("nvidia-smi: unreadable line %r", line)
            continue
        name, memory_mib, compute_cap = parts
        gpus.append(Gpu(name, round(_number(memory_mib) / 1024, 2), _number(compute_cap)))
    return tuple(gpus)


def _number(field: str) -> float:
    try:
        value = float(field)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0


def _cpus() -> int:
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = psutil.cpu_count(logical=True) or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(count, math.ceil(quota))) if quota else max(1, count)


def _cgroup_cpu_quota() -> float | None:
    """CPUs granted by a cgroup CPU quota, None when unlimited or unknown."""
    v2 = _read(_CGROUP_ROOT / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota != "max" and _positive(quota) and _positive(period):
            return int(quota) / int(period)
        return None
    quota_v1, period_v1 = _read(_CGROUP_ROOT / "cpu/cpu.cfs_quota_us"), _read(_CGROUP_ROOT / "cpu/cpu.cfs_period_us")
    if _positive(quota_v1) and _positive(period_v1):
        return int(quota_v1) / int(period_v1)
    return None


def _memory_bytes() -> int:
    total = int(psutil.virtual_memory().total)
    for path in (_CGROUP_ROOT / "memory.max", _CGROUP_ROOT / "memory/memory.limit_in_bytes"):
        limit = _read(path)
        if _positive(limit) and int(limit) < _NO_LIMIT_BYTES:
            return min(total, int(limit))
    return total


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _positive(text: str) -> bool:
    return text.isdigit() and int(text) > 0
