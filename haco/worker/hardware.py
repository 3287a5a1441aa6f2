"""What this worker machine offers, reported once at worker start and matched by job `requirements`.

`detect()` is synchronous and may take up to NVIDIA_SMI_TIMEOUT_S: call it before the event loop
starts or through `asyncio.to_thread`.

- cpus: CPUs this process may run on (its affinity set), capped by a cgroup CPU quota if any.
- memory_gb: physical memory, capped by a cgroup memory limit if any (cgroup v2 or v1).
- disk_free_gb: free space on the filesystem holding `disk_path` (the worker's data dir).
- hardware: the machine architecture (`platform.machine()`, lower-cased, e.g. "x86_64"), plus
  "gpu" and "cuda" when nvidia-smi reports at least one GPU.
- gpus: from `nvidia-smi --query-gpu=index,name,memory.total,compute_cap --format=csv,noheader,nounits`
  when `nvidia-smi` is on PATH, else `rocm-smi --showproductname --showmeminfo vram --json`, else
  Apple's MPS on an arm64 Mac (one device, the machine's memory). Anything wrong with a tool
  (failing, hanging past `probe_timeout_s`, output we cannot read) means no GPUs from it, with a
  warning: a worker without working GPUs must not claim them. A hanging tool is killed with its
  whole process group, so a wrapper script's children cannot hold the probe open.
- cuda_compute: the highest compute capability among the GPUs (e.g. 8.6), 0.0 without GPUs.

Each GPU becomes a device (kind, index, model, memory, compute) that jobs reserve
(docs/resources.md); `--gpus`, `--cpus`, `--memory-gb` and the reserve flags override detection.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shutil
import json
import signal
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import psutil

log = logging.getLogger(__name__)

NVIDIA_SMI_TIMEOUT_S: Final = 10.0  #: default probe timeout for each GPU tool
NVIDIA_SMI_QUERY: Final = ("--query-gpu=index,name,memory.total,compute_cap", "--format=csv,noheader,nounits")
ROCM_SMI_QUERY: Final = ("--showproductname", "--showmeminfo", "vram", "--json")
_GIB: Final = 1024**3
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
_NO_LIMIT_BYTES: Final = 1 << 60  # cgroup v1 reports "no limit" as a huge page-rounded number


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    memory_gb: float  # total memory, GiB
    compute_cap: float  # CUDA compute capability, e.g. 8.6; 0.0 when the driver does not say
    index: int = 0  # the driver's index (CUDA_VISIBLE_DEVICES, HIP_VISIBLE_DEVICES take it)
    kind: str = "cuda"  # cuda | rocm | mps


@dataclass(frozen=True, slots=True)
class Capabilities:
    cpus: int
    memory_gb: float
    disk_free_gb: float
    hardware: tuple[str, ...]
    gpus: tuple[Gpu, ...]
    cuda_compute: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Overrides:
    """The worker's flags: figures that replace detection, and what to keep back for the system."""

    cpus: int | None = None
    memory_gb: float | None = None
    gpus: tuple[int, ...] | None = None  #: device indices to offer; () offers none
    reserve_cpus: int = 0
    reserve_memory_gb: float = 0.0
    probe_timeout_s: float = NVIDIA_SMI_TIMEOUT_S


def detect(disk_path: str | os.PathLike[str] = ".", overrides: Overrides | None = None) -> Capabilities:
    """Probe this machine; see the module docstring for what each figure means."""
    o = overrides or Overrides()
    gpus = () if o.gpus == () else detect_gpus(o.probe_timeout_s)
    if o.gpus:
        missing = sorted(set(o.gpus) - {g.index for g in gpus})
        if missing:
            log.warning("--gpus names devices that detection did not find: %s", missing)
        gpus = tuple(g for g in gpus if g.index in o.gpus)
    caps = _capabilities(disk_path, gpus)
    cpus = (o.cpus if o.cpus is not None else caps.cpus) - o.reserve_cpus
    memory = (o.memory_gb if o.memory_gb is not None else caps.memory_gb) - o.reserve_memory_gb
    return replace(caps, cpus=max(0, cpus), memory_gb=round(max(0.0, memory), 2))


def _capabilities(disk_path: str | os.PathLike[str], gpus: tuple[Gpu, ...]) -> Capabilities:
    hardware = {platform.machine().lower() or "unknown"}
    if gpus:
        hardware |= {"gpu", *(g.kind for g in gpus)}
    return Capabilities(
        cpus=_cpus(),
        memory_gb=round(_memory_bytes() / _GIB, 2),
        disk_free_gb=round(shutil.disk_usage(disk_path).free / _GIB, 2),
        hardware=tuple(sorted(hardware)),
        gpus=gpus,
        cuda_compute=max((g.compute_cap for g in gpus if g.kind == "cuda"), default=0.0),
    )


def detect_gpus(timeout_s: float = NVIDIA_SMI_TIMEOUT_S) -> tuple[Gpu, ...]:
    """GPUs from nvidia-smi, else rocm-smi, else MPS; () when none works (each failure warned)."""
    if shutil.which("nvidia-smi"):
        out = probe("nvidia-smi", NVIDIA_SMI_QUERY, timeout_s)
        gpus = parse_nvidia_smi(out) if out is not None else ()
        if out is not None and not gpus and out.strip():
            log.warning("nvidia-smi printed nothing we can read: no CUDA devices offered")
        if gpus:
            return gpus
    if shutil.which("rocm-smi"):
        out = probe("rocm-smi", ROCM_SMI_QUERY, timeout_s)
        gpus = parse_rocm_smi(out) if out is not None else ()
        if gpus:
            return gpus
    if platform.system() == "Darwin" and platform.machine() == "arm64":  # Apple silicon: one MPS device
        return (Gpu("Apple MPS", round(_memory_bytes() / _GIB, 2), 0.0, 0, "mps"),)
    return ()


def probe(tool: str, args: tuple[str, ...], timeout_s: float) -> str | None:
    """A tool's stdout, or None (warned) when it fails, exits non-zero or runs past `timeout_s`.

    The tool runs in a session of its own and is killed with its whole process group on timeout:
    `subprocess.run(timeout=)` kills only the child, then waits for the pipe to close, which a
    grandchild (a wrapper script's `sleep`) holds open."""
    exe = shutil.which(tool)
    if exe is None:
        return None
    try:
        proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    except OSError as exc:
        log.warning("%s could not run: %s; no devices from it", tool, exc)
        return None
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.stdout and proc.stdout.close()  # type: ignore[func-returns-value]
        proc.stderr and proc.stderr.close()  # type: ignore[func-returns-value]
        proc.wait()
        log.warning("%s did not answer within %gs; killed, no devices from it", tool, timeout_s)
        return None
    if proc.returncode != 0:
        log.warning("%s exited with %d: %s; no devices from it", tool, proc.returncode,
                    (err.strip() or out.strip())[:200])
        return None
    return out


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """Parse `index, name, memory.total [MiB], compute_cap` CSV lines (or, from older callers,
    `name, memory, compute_cap`, indexed in order); unreadable lines are skipped.

    The name is everything between the first comma and the last two, so a name containing a
    comma survives. Non-numeric fields such as `[N/A]` or `[Not Supported]` read as 0.0.
    """
    gpus = []
    for n, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            log.debug("nvidia-smi: unreadable line %r", line)
            continue
        head, memory_mib, compute_cap = parts
        index_text, sep, name = head.partition(",")
        if sep and index_text.strip().isdigit():
            index, name = int(index_text), name.strip()
        else:
            index, name = len(gpus), head
        if not name:
            continue
        gpus.append(Gpu(name, round(_number(memory_mib) / 1024, 2), _number(compute_cap), index, "cuda"))
    return tuple(gpus)


def parse_rocm_smi(text: str) -> tuple[Gpu, ...]:
    """Parse rocm-smi's JSON ({"card0": {"Card series": ..., "VRAM Total Memory (B)": ...}}); the gfx
    architecture number (gfx90a -> 90.0) stands in for a compute capability. () on anything odd."""
    try:
        cards = json.loads(text)
    except ValueError:
        log.warning("rocm-smi printed something that is not JSON: no ROCm devices offered")
        return ()
    gpus = []
    for key, card in sorted(cards.items()) if isinstance(cards, dict) else ():
        if not (isinstance(key, str) and key.startswith("card") and key[4:].isdigit() and isinstance(card, dict)):
            continue
        name = str(card.get("Card series") or card.get("Card model") or "AMD GPU")
        memory = _number(str(card.get("VRAM Total Memory (B)", "0"))) / _GIB
        gfx = str(card.get("GFX Version", "")).removeprefix("gfx")
        gpus.append(Gpu(name, round(memory, 2), _number("".join(c for c in gfx if c.isdigit())[:2] or "0"),
                        int(key[4:]), "rocm"))
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
