"""Resource figures and membership of one job's process session.

Every job process is started with `start_new_session=True`, so it leads a new session (sid = pgid =
its pid) and everything it forks stays in that session unless it calls setsid itself. Membership is
found by scanning `/proc` pids with `os.getsid` (one cheap syscall each), which, unlike walking
parent links, still finds orphans re-parented to init after their parent died. Samples of
concurrent jobs share a scan taken within SCAN_SHARE_S; kill checks always scan afresh.

How the figures are measured (psutil; `_process` samples every SAMPLE_INTERVAL_S from the event
loop; one sample of a small session costs well under a millisecond):

- peak_rss_bytes: the maximum over samples of the summed RSS of the session's live processes, and
  at least the largest per-process high-water mark (`VmHWM` on Linux), so a single-process job's
  peak is exact even when it spiked between samples. Shared pages count once per process.
- cpu_ms: per process, its last-sampled user+system time plus its children_user/children_system
  (the CPU of descendants it waited for). A process that vanished while its parent is still in the
  session was waited for by that parent, whose later sample includes it, so its own sample is
  dropped to avoid counting it twice. What is missed: CPU spent in a process's last sampling
  interval before it exits, and processes shorter than one interval that nobody in the session
  waited for. We do not use `getrusage(RUSAGE_CHILDREN)` deltas: they are process-wide, so they
  mix concurrent jobs, and they never include orphans. Executors that can report exact figures
  from inside the job (the python runner) take the larger of the two.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Final

import psutil

log = logging.getLogger(__name__)

_HAS_PROC_STATUS: Final = sys.platform.startswith("linux")
SCAN_SHARE_S: Final = 0.02  # samples of concurrent jobs this close together share one /proc scan
_scan: tuple[float, dict[int, list[int]]] | None = None  # (monotonic time, pids by sid); event loop only


@dataclass(slots=True)
class _Seen:
    parent: tuple[int, float] | None  # the parent's key, while the parent is in the session
    cpu_s: float  # own user+system plus waited-for children's, at the last sample
    absorbed: bool = False  # its parent waited for it: counted in the parent's children_* times


@dataclass(slots=True)
class SessionMonitor:
    """Samples the session led by `sid`. Not thread-safe; one per process being run."""

    sid: int
    samples: int = 0
    peak_rss_bytes: int = 0
    _seen: dict[tuple[int, float], _Seen] = field(default_factory=dict)

    def members(self, *, max_age_s: float = 0.0) -> list[int]:
        """Pids of the session, zombies included, from a scan at most `max_age_s` old.

        A shared scan that predates the session (it lacks even the leader) is not used.
        """
        pids = _sessions(max_age_s).get(self.sid)
        if pids is None and max_age_s > 0:
            pids = _sessions(0.0).get(self.sid)
        return list(pids or ())

    def live_members(self) -> list[int]:
        """Pids of the session that are not zombies, scanned now: what still has to be killed."""
        live = []
        for pid in self.members():
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    live.append(pid)
            except psutil.Error:
                continue
        return live

    def sample(self) -> None:
        """Take one sample; safe to call at any time, including after the leader has exited."""
        self.samples += 1
        listed = self.members(max_age_s=SCAN_SHARE_S)
        current: dict[int, tuple[int, float]] = {}
        parents: dict[tuple[int, float], int] = {}
        rss_total = 0
        for pid in listed:
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    key = (pid, proc.create_time())
                    times = proc.cpu_times()
                    parents[key] = proc.ppid()
                    zombie = proc.status() == psutil.STATUS_ZOMBIE
                    rss = 0 if zombie else proc.memory_info().rss
            except psutil.Error:
                continue
            cpu = times.user + times.system + times.children_user + times.children_system
            seen = self._seen.setdefault(key, _Seen(parent=None, cpu_s=cpu))
            seen.cpu_s = max(seen.cpu_s, cpu)
            current[pid] = key
            rss_total += rss
            if not zombie:
                self.peak_rss_bytes = max(self.peak_rss_bytes, _high_water_mark(pid))
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss_total)
        for key, ppid in parents.items():
            self._seen[key].parent = current.get(ppid)
        self._absorb_waited_for(set(current.values()), set(listed))

    def cpu_ms(self) -> float:
        """CPU time of the session so far, as of the last sample, in milliseconds."""
        return 1000.0 * sum(s.cpu_s for s in self._seen.values() if not s.absorbed)

    def _absorb_waited_for(self, sampled: set[tuple[int, float]], listed: set[int]) -> None:
        """Absorb processes gone before this sample's listing whose parent was sampled after it.

        A process missing from the listing has been reaped, and only its parent can have reaped
        it, so the parent's children_* times sampled afterwards include all of its CPU.
        """
        for key, seen in self._seen.items():
            if seen.absorbed or key in sampled or key[0] in listed:
                continue
            if seen.parent is not None and seen.parent in sampled:
                seen.absorbed = True


def _sessions(max_age_s: float) -> dict[int, list[int]]:
    """Pids by session id, for every process on the machine we may ask about.

    One scan costs O(all pids); concurrent jobs' samples within `max_age_s` of each other share it.
    """
    global _scan
    now = time.monotonic()
    if _scan is not None and now - _scan[0] <= max_age_s:
        return _scan[1]
    by_sid: dict[int, list[int]] = {}
    for pid in psutil.pids():
        try:
            by_sid.setdefault(os.getsid(pid), []).append(pid)
        except OSError:  # gone since the listing, or not ours to ask
            continue
    _scan = (now, by_sid)
    return by_sid


def _high_water_mark(pid: int) -> int:
    """VmHWM of one process in bytes, 0 where /proc does not offer it."""
    if not _HAS_PROC_STATUS:
        return 0
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
