"""The worker agent: one websocket to the leader, jobs as asyncio tasks, reports until acknowledged.

Contract: everything runs on one event loop and never blocks it (hardware detection and workdir I/O
go through `asyncio.to_thread`; executors spawn their own process groups). Jobs outlive connections:
a job keeps running across a reconnect, and every hello lists the attempts the agent runs or holds an
unacknowledged report for, so the leader can re-push, cancel or requeue each mismatch. Reports sit in
an ordered outbox (protocol.py) until an `ack` answers them for good; they are resent after every
welcome and periodically. When reports stop committing for `stall_s`, the agent moves to another
replica. `request_drain()` (SIGTERM, SIGINT) stops taking work, lets running jobs finish within
`drain_timeout_s`, flushes the outbox, says `bye` and makes `run()` return 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import random
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from haco.worker import attempts
from haco.worker.attempts import Held
from haco.worker.durable import Durable, DurableRuns, is_durable
from haco.worker.executors import ExecContext, ExecResult, Executor, executor_names, get_executor
from haco.worker.hardware import Capabilities, Overrides, detect
from haco.worker.joblog import BUDGET_BYTES_DEFAULT, BYTES_MAX_DEFAULT, KEEP_S_DEFAULT, AttemptLogWriter
from haco.worker.log_service import PROGRESS_EVERY_S, LogService
from haco.worker.protocol import Attempt, Backoff, Link, LinkSettings, Outbox, encode

log = logging.getLogger("haco.worker.agent")  # not __name__: under `python -m` that is "__main__"

DEFAULT_COORDINATORS = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003"
REDIRECT_HOPS_MAX = 3  # consecutive redirects followed at once; then back off
try:  # not haco.__version__: an editable install can load `haco` as a namespace package
    _VERSION = importlib.metadata.version("haco")
except importlib.metadata.PackageNotFoundError:
    _VERSION = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    coordinators: Sequence[str]  #: replica base URLs; any will do, the agent follows redirects
    worker_id: str
    capacity: int
    tags: tuple[str, ...] = ()
    workdir: Path = Path("haco-work")  #: each attempt gets a scratch dir below it, removed afterwards
    token: str | None = None
    ca_file: str | None = None  #: CA bundle for https replicas
    client_cert: str | None = None  #: PEM certificate (and key) presented for mTLS
    client_key: str | None = None
    drain_timeout_s: float = 60.0  #: running jobs get this long to finish once draining, then are cancelled
    heartbeat_s: float = 1.0  #: until a welcome says otherwise
    result_bytes_max: int = 65536
    hardware: Capabilities | None = None  #: reported instead of detecting (tests)
    overrides: Overrides = Overrides()  #: --cpus, --memory-gb, --gpus, reserves, the probe timeout
    # The replica answers every report within its propose timeout (5 s), so a resend sooner than that
    # only doubles the Raft load of a leader that is already slow; a lost answer is what it is for.
    resend_s: float = 5.0  #: an unanswered report is resent this often
    stall_s: float = 8.0  #: reports unanswered (or answered `retry`) this long: move to another replica
    connect_timeout_s: float = 5.0
    welcome_timeout_s: float = 15.0  #: the replica commits our registration before it welcomes us
    flush_timeout_s: float = 10.0  #: how long a drain waits for the last acks and the replica's goodbye
    backoff_s_min: float = 0.1
    backoff_s_max: float = 5.0
    log_dir: Path | None = None  #: attempts' output files (joblog); default <workdir>/logs
    log_bytes_max: int = BYTES_MAX_DEFAULT  #: per attempt; past it the oldest output is dropped
    log_keep_s: float = KEEP_S_DEFAULT  #: logs of attempts that ended longer ago are removed
    log_budget_bytes: int = BUDGET_BYTES_DEFAULT  #: and the oldest ones while all logs exceed this
    log_sweep_s: float = 600.0  #: how often retention runs

    @property
    def logs_root(self) -> Path:
        return self.log_dir if self.log_dir is not None else self.workdir / "logs"

    def validate(self) -> None:
        if not self.coordinators:
            raise ValueError("coordinators: at least one replica URL is needed")
        from haco.client import parse_urls  # the CLI's check: http(s)://HOST[:PORT], a port in 1..65535
        from haco.errors import ConfigError
        try:
            parse_urls(self.coordinators)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        if not self.worker_id:
            raise ValueError("worker_id must not be empty")
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {self.capacity}")
        if self.drain_timeout_s < 0:
            raise ValueError("drain_timeout_s must not be negative")
        if self.log_bytes_max < 1 or self.log_budget_bytes < 1 or self.log_keep_s < 0 or self.log_sweep_s <= 0:
            raise ValueError("log_bytes_max, log_budget_bytes and log_sweep_s must be positive, log_keep_s not negative")


@dataclass(slots=True)
class _Flags:
    draining: bool = False  #: request_drain() was called: no new work, then leave
    paused: bool = False  #: an operator drained us: no new work, stay connected
    bye_wanted: bool = False
    stopping: bool = False
    drain_now: bool = False  #: a second signal: stop waiting for running jobs


class Agent:
    """One worker process's agent; `await run()` once."""

    def __init__(self, config: WorkerConfig, *, executors: Callable[[str], Executor] = get_executor) -> None:
        config.validate()
        # absolute once, here: executors run jobs with cwd inside the workdir and hand its paths to
        # subprocesses, where a relative path would resolve against the job's cwd, not ours
        self.config = config = replace(config, workdir=config.workdir.absolute(),
                                       log_dir=None if config.log_dir is None else config.log_dir.absolute())
        self.flags = _Flags()
        self.jobs: dict[Attempt, asyncio.Task[None]] = {}
        self.outbox = Outbox(resend_s=config.resend_s)
        self.kick = asyncio.Event()  # wakes the writer: a report or a control frame is waiting
        self.settings = LinkSettings(token=config.token, heartbeat_s=config.heartbeat_s, stall_s=config.stall_s,
                                     connect_timeout_s=config.connect_timeout_s,
                                     welcome_timeout_s=config.welcome_timeout_s)
        self._lookup = executors
        self._slots = asyncio.Semaphore(config.capacity)
        self._drain_requested = asyncio.Event()
        self._jobs_changed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._said_bye = asyncio.Event()
        self._caps: dict[str, Any] = {}  # hello's top-level capability fields
        self._info: dict[str, Any] = {}  # and what goes in its `info`
        self.logs: dict[Attempt, AttemptLogWriter] = {}  #: open writers of running attempts
        self.log_service = LogService(config.logs_root, lambda key: key in self.jobs)
        self._progress: bytes | None = None  #: a `progress` frame waiting for the writer
        self._executors: list[str] = []  # job types it runs, plugins included: hello's `executors`
        self.durable = DurableRuns(config.workdir, config.worker_id, config.logs_root, config.log_bytes_max)
        self._device_kinds: dict[int, str] = {}  # device index -> kind, for the visibility variables
        self._pinned: dict[Attempt, set[int]] = {}  # cores given to running pin_cpus attempts

    # ---- lifecycle -----------------------------------------------------------------------------

    def request_drain(self) -> None:
        """Start draining (SIGTERM); a second call stops waiting for running jobs. Call on the loop."""
        if self._drain_requested.is_set():
            self.flags.drain_now = True
            self._jobs_changed.set()
        self._drain_requested.set()

    async def run(self) -> int:
        """Serve until a drain completes; returns the exit code (0)."""
        caps = self.config.hardware
        if caps is None:
            caps = await asyncio.to_thread(_detect, self.config.workdir, self.config.overrides)
        self._caps, self._info = _capability_fields(caps)
        self._device_kinds = {g.index: g.kind for g in caps.gpus}
        self._executors = await asyncio.to_thread(executor_names)  # reads installed distributions' metadata
        log.info("capabilities worker=%s executors=%s %s", self.config.worker_id, ",".join(self._executors),
                 " ".join(f"{k}={v}" for k, v in {**self._caps, **self._info}.items()))
        psutil.cpu_percent(interval=None)  # primes the counter: the first reading is meaningless
        await self._adopt()  # before the first hello, which lists what we hold
        from haco.security.tls import client_context
        ctx = client_context(self.config.ca_file, self.config.client_cert, self.config.client_key)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx if ctx else True)) as http:
            conn = asyncio.create_task(self._connect_loop(http), name="haco-worker-connect")
            drain = asyncio.create_task(self._drain(), name="haco-worker-drain")
            housekeeping = asyncio.create_task(self._housekeeping(), name="haco-worker-logs")
            try:
                done, _ = await asyncio.wait({conn, drain}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a bug in either re-raises here
                if not drain.done():  # the replica closed after our bye: let the drain log its end
                    await asyncio.wait({drain}, timeout=self.config.flush_timeout_s)
            finally:
                self.flags.stopping = True
                self._stopped.set()
                tasks = [conn, drain, housekeeping, *self.jobs.values()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.durable.close()
        log.info("worker stopped worker=%s unacked=%d", self.config.worker_id, len(self.outbox))
        return 0

    async def _connect_loop(self, http: aiohttp.ClientSession) -> None:
        urls = [u.rstrip("/") for u in self.config.coordinators]
        random.shuffle(urls)
        backoff = Backoff(self.config.backoff_s_min, self.config.backoff_s_max)
        turn, hops, redirect = 0, 0, None
        while not self.flags.stopping:
            if redirect is not None:
                url, redirect = redirect, None
            else:
                url, turn = urls[turn % len(urls)], turn + 1
            end = await Link.session(self, http, url)
            if self.flags.stopping:
                return
            if end.welcomed:
                backoff.reset()
                hops = 0
            if end.leader_url and hops < REDIRECT_HOPS_MAX:
                hops += 1
                redirect = end.leader_url.rstrip("/")
                log.info("redirected worker=%s from=%s to=%s", self.config.worker_id, url, redirect)
                continue
            hops = 0
            delay = backoff.next()
            log.debug("reconnecting worker=%s in_s=%.2f", self.config.worker_id, delay)
            await self._wait(self._stopped, delay)

    async def _drain(self) -> None:
        await self._drain_requested.wait()
        cfg = self.config
        log.info("draining worker=%s running=%d deadline_s=%g", cfg.worker_id, len(self.jobs), cfg.drain_timeout_s)
        self.flags.draining = True
        self.kick.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.drain_timeout_s
        while self.jobs and not self.flags.drain_now and loop.time() < deadline:
            self._jobs_changed.clear()
            await self._wait(self._jobs_changed, deadline - loop.time())
        if self.jobs:
            log.warning("drain deadline passed, cancelling worker=%s jobs=%s", cfg.worker_id, sorted(self.jobs))
            tasks = list(self.jobs.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        deadline = loop.time() + cfg.flush_timeout_s
        while len(self.outbox) and loop.time() < deadline:
            self._jobs_changed.clear()
            await self._wait(self._jobs_changed, min(0.5, deadline - loop.time()))
        self.flags.bye_wanted = True
        self.kick.set()
        if not await self._wait(self._said_bye, max(1.0, deadline - loop.time())):
            log.warning("left without a goodbye worker=%s unacked=%d", cfg.worker_id, len(self.outbox))
        log.info("drained worker=%s", cfg.worker_id)

    async def _housekeeping(self) -> None:
        """Progress to forward, every PROGRESS_EVERY_S; log retention, every log_sweep_s."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + cfg.log_sweep_s
                await self.log_service.sweep(keep_s=cfg.log_keep_s, budget_bytes=cfg.log_budget_bytes,
                                             active=set(self.jobs) | self.outbox.attempts())
            await asyncio.to_thread(self.durable.read_progress, list(self.jobs))
            frame = self.log_service.progress_frame({**self.logs, **self.durable.progress})
            if frame is not None:
                self._progress = frame
                self.kick.set()
            await asyncio.sleep(PROGRESS_EVERY_S)

    @staticmethod
    async def _wait(event: asyncio.Event, timeout_s: float) -> bool:
        """True when `event` was set within `timeout_s`."""
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout_s))
        except TimeoutError:
            return False
        return True

    # ---- frames from the replica (called by Link) ----------------------------------------------

    def hello(self) -> bytes:
        running = sorted(set(self.jobs) | self.outbox.attempts())
        return encode("hello", worker_id=self.config.worker_id, capacity=self.config.capacity, batch=True, logs=1,
                      tags=list(self.config.tags), **self._caps, running=[[j, a] for j, a in running],
                      executors=self._executors,
                      info={**self._info, "hostname": socket.gethostname(), "pid": os.getpid(),
                            "version": _VERSION})

    def heartbeat(self) -> bytes:
        load = {"cpu_percent": psutil.cpu_percent(interval=None),
                "memory_percent": psutil.virtual_memory().percent, "running": len(self.jobs)}
        return encode("heartbeat", load=load)

    def on_assign(self, body: dict[str, Any]) -> None:
        try:
            key: Attempt = (str(body["job_id"]), int(body["attempt"]))
            kind, timeout_s = str(body["type"]), float(body.get("timeout_s") or 600.0)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("malformed assign ignored worker=%s error=%s", self.config.worker_id, exc)
            return
        if self.flags.draining or self.flags.paused:
            log.info("assign ignored while draining job=%s attempt=%d", *key)
            return
        if key in self.jobs or self.outbox.has_final(key):
            log.debug("duplicate assign ignored job=%s attempt=%d", *key)
            return
        log.debug("assigned job=%s attempt=%d type=%s", key[0], key[1], kind)
        env = self._resource_env(key, body.get("devices"), body.get("pin_cpus"))
        self.jobs[key] = asyncio.create_task(self._run_job(key, self._execute(key, kind, body.get("payload"), timeout_s,
                                                                              env)),
                                             name=f"haco-job-{key[0]}-{key[1]}")

    def _resource_env(self, key: Attempt, devices: Any, pin_cpus: Any) -> dict[str, str]:
        """The job's view of its reservation: on a worker with devices, exactly the assigned ones are
        visible (none for a job that reserved none); with `pin_cpus`, the cores it is pinned to."""
        env: dict[str, str] = {}
        if self._device_kinds:
            mine = [int(d) for d in devices] if isinstance(devices, list) else []
            for kind, var in (("cuda", "CUDA_VISIBLE_DEVICES"), ("rocm", "HIP_VISIBLE_DEVICES")):
                if kind in self._device_kinds.values():
                    env[var] = ",".join(str(i) for i in mine if self._device_kinds.get(i) == kind)
            if "rocm" in self._device_kinds.values():
                env["ROCR_VISIBLE_DEVICES"] = env["HIP_VISIBLE_DEVICES"]
            env["HACO_DEVICES"] = ",".join(map(str, mine))
        if type(pin_cpus) is int and pin_cpus > 0:
            cores = _free_cores(pin_cpus, set().union(*self._pinned.values()) if self._pinned else set())
            if cores:
                self._pinned[key] = cores
                env["HACO_CPU_SET"] = ",".join(map(str, sorted(cores)))
        return env

    def on_cancel(self, body: dict[str, Any]) -> None:
        try:
            key: Attempt = (str(body["job_id"]), int(body["attempt"]))
        except (KeyError, TypeError, ValueError):
            return
        task = self.jobs.get(key)
        log.info("cancel job=%s attempt=%d running=%s", key[0], key[1], task is not None)
        if task is not None:
            task.cancel()

    def on_drain(self) -> None:
        if not self.flags.paused:
            log.info("drained by an operator worker=%s running=%d", self.config.worker_id, len(self.jobs))
        self.flags.paused = True

    def on_undrain(self) -> None:
        if self.flags.paused:
            log.info("undrained by an operator worker=%s", self.config.worker_id)
        self.flags.paused = False

    def wants_draining(self) -> bool:
        return self.flags.draining

    def take_progress(self) -> bytes | None:
        frame, self._progress = self._progress, None
        return frame

    async def answer_log(self, body: dict[str, Any]) -> bytes:
        return await self.log_service.answer(body)

    def wants_bye(self) -> bool:
        return self.flags.bye_wanted

    def on_settled(self) -> None:
        self._jobs_changed.set()  # the drain waits on the outbox too
        self.durable.settle(set(self.jobs) | self.outbox.attempts())  # answered for good: its record may go

    def on_bye_done(self) -> None:
        self.flags.stopping = True
        self._said_bye.set()

    # ---- jobs ------------------------------------------------------------------------------------

    async def _adopt(self) -> None:
        """Hold the attempts a previous agent of this worker left running (or finished meanwhile):
        each reports its result as if it had never stopped; the first hello lists them."""
        for held, executor in await self.durable.scan(self._lookup):
            key = held.key
            log.info("adopted attempt job=%s attempt=%d alive=%s", key[0], key[1],
                     await asyncio.to_thread(attempts.runner_alive, held.directory))
            self.jobs[key] = asyncio.create_task(self._run_job(key, self._adopted(held, executor), started=False),
                                                 name=f"haco-job-{key[0]}-{key[1]}")

    async def _adopted(self, held: Held, executor: Durable) -> ExecResult:
        try:
            return await self.durable.adopt(held, executor)
        finally:
            await asyncio.to_thread(shutil.rmtree, held.spec["workdir"], True)

    def _report(self, kind: str, key: Attempt, **fields: Any) -> None:
        self.outbox.add(kind, key[0], key[1], **fields)
        self.kick.set()

    async def _run_job(self, key: Attempt, work: Coroutine[Any, Any, ExecResult], *, started: bool = True) -> None:
        try:
            async with self._slots:
                if started:
                    self._report("started", key)
                res = await work
            res = _encodable(res)
            log.debug("finished job=%s attempt=%d ok=%s error=%s", key[0], key[1], res.ok, res.error)
            if res.ok:
                self._report("completed", key, result=res.result, stats=res.stats)
            else:
                self._report("failed", key, error=res.error or "failed", result=res.result, stats=res.stats,
                             timed_out=res.timed_out)
        except asyncio.CancelledError:
            log.info("job cancelled job=%s attempt=%d", *key)
            work.close()  # cancelled while waiting for a slot: never started
            raise
        finally:
            self.jobs.pop(key, None)
            self._pinned.pop(key, None)
            self._jobs_changed.set()

    async def _execute(self, key: Attempt, kind: str, payload: Any, timeout_s: float,
                       env: dict[str, str] | None = None) -> ExecResult:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{key[0]}.{key[1]}")
        workdir = self.config.workdir / safe
        try:
            executor = self._lookup(kind)
        except KeyError as exc:
            return ExecResult(False, None, f"unknown executor {kind!r}: {exc}", _no_stats())
        scratch = getattr(executor, "uses_workdir", True)  # noop runs in-process: no dir, no log, no thread hops
        durable = is_durable(executor)  # its process runs under an attempt runner (survives our restart)
        writer: AttemptLogWriter | None = None
        if scratch:
            await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        if scratch and not durable:
            writer = await asyncio.to_thread(AttemptLogWriter, self.config.logs_root, key[0], key[1],
                                             bytes_max=self.config.log_bytes_max)
            self.logs[key] = writer
        watched = scratch and not durable
        on_spawn = await self.durable.watch(key, kind) if watched else None
        ctx = ExecContext(key[0], key[1], timeout_s, workdir, env or {}, self.config.result_bytes_max, writer,
                          worker_id=self.config.worker_id, on_spawn=on_spawn)
        res: ExecResult | None = None
        try:
            res = await (self.durable.run(key, kind, executor, payload, ctx) if durable  # type: ignore[arg-type]
                         else executor.run(payload, ctx))
            return res
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the job runner is a boundary: a broken executor must not take us down
            log.exception("executor crashed job=%s attempt=%d type=%s", key[0], key[1], kind)
            return ExecResult(False, None, f"executor {kind} crashed: {exc!r}"[:4096], _no_stats())
        finally:
            if writer is not None:
                self.logs.pop(key, None)
                await asyncio.to_thread(writer.close, _exit_code(res))
            if watched:
                await self.durable.unwatch(key)
            if scratch:
                await asyncio.to_thread(shutil.rmtree, workdir, True)


def _encodable(res: ExecResult) -> ExecResult:
    """`res`, or a failure when its result or stats cannot cross the wire (a plugin returning a set)."""
    try:
        encode("check", result=res.result, stats=res.stats)
    except (TypeError, ValueError, OverflowError) as exc:
        return ExecResult(False, None, f"result is not serializable: {exc}"[:4096], _no_stats(), res.timed_out)
    return res


def _exit_code(res: ExecResult | None) -> int | None:
    code = res.result.get("exit_code") if res is not None and isinstance(res.result, dict) else None
    return code if type(code) is int else None


def _no_stats() -> dict[str, float | int]:
    return {"wall_ms": 0.0, "cpu_ms": 0.0, "peak_rss_bytes": 0}


def _detect(workdir: Path, overrides: Overrides) -> Capabilities:
    """Creates the workdir and probes the machine; blocking (nvidia-smi), so run through to_thread."""
    workdir.mkdir(parents=True, exist_ok=True)
    return detect(workdir, overrides)


def _free_cores(n: int, taken: set[int]) -> set[int]:
    """`n` cores of this process's affinity set that no pinned attempt holds (fewer if short)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux: nothing to pin to
        return set()
    return set([c for c in allowed if c not in taken][:n])


def _capability_fields(caps: Capabilities) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hello's capability fields and its `info` extras, from a `hardware.Capabilities`.

    `cuda_compute` is a number (0.0 without a GPU): the replica parses it with float().
    """
    top = {"cpus": int(caps.cpus), "memory_gb": float(caps.memory_gb),
           "cuda_compute": float(caps.cuda_compute or 0.0), "hardware": [str(h) for h in caps.hardware]}
    if caps.gpus:
        top["devices"] = [{"kind": g.kind, "index": g.index, "model": g.name, "memory_gb": float(g.memory_gb),
                           "compute": float(g.compute_cap)} for g in caps.gpus]
    info = {"disk_free_gb": float(caps.disk_free_gb), "gpus": _plain(caps.gpus)}
    return top, info


def _plain(value: Any) -> Any:
    """Dataclasses and tuples as msgpack-able maps and lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---- command line ----------------------------------------------------------------------------------


def register_cli(subparsers: Any) -> None:
    """Adds `haco worker` to the haco CLI."""
    p = subparsers.add_parser("worker", help="run one worker: connects to the leader, runs jobs; SIGTERM drains",
                              description="Run one worker. SIGTERM or Ctrl+C drains it: no new work, running "
                                          "jobs finish (up to --drain-timeout), then it deregisters and exits 0.")
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: `haco --coordinators X worker` keeps the value given before the subcommand
    p.add_argument("--coordinators", default=argparse.SUPPRESS, metavar="URL,...",
                   help="replica URLs (default: $HACO_COORDINATORS, else the `haco up` defaults)")
    p.add_argument("--token", default=argparse.SUPPRESS, help="API token (default: $HACO_TOKEN)")
    p.add_argument("--token-file", default=argparse.SUPPRESS, help="file holding the API token ($HACO_TOKEN_FILE)")
    p.add_argument("--ca-file", default=argparse.SUPPRESS, help="CA bundle for https replicas ($HACO_CA_FILE)")
    p.add_argument("--client-cert", default=argparse.SUPPRESS, help="client certificate, mTLS ($HACO_CLIENT_CERT)")
    p.add_argument("--client-key", default=argparse.SUPPRESS, help="PEM key of --client-cert ($HACO_CLIENT_KEY)")
    p.add_argument("--id", dest="worker_id", help="worker id (default: HOSTNAME-PID)")
    p.add_argument("--capacity", type=int, help="jobs run at once (default: CPU count)")
    p.add_argument("--tags", default="", metavar="A,B", help="tags that jobs' required_tags match")
    p.add_argument("--cpus", type=int, help="CPUs jobs may reserve (default: detected: affinity, cgroup quota)")
    p.add_argument("--memory-gb", type=float, help="memory jobs may reserve (default: detected, cgroup limit)")
    p.add_argument("--gpus", metavar="I,J|none", help="device indices to offer (default: all detected)")
    p.add_argument("--reserve-cpus", type=int, default=0, metavar="N", help="CPUs kept back for the system (0)")
    p.add_argument("--reserve-memory-gb", type=float, default=0.0, metavar="GB",
                   help="memory kept back for the system (0)")
    p.add_argument("--probe-timeout", type=float, default=10.0, metavar="S",
                   help="how long nvidia-smi or rocm-smi may take before it is killed and ignored (10)")
    p.add_argument("--drain-timeout", type=float, default=60.0, metavar="S",
                   help="running jobs get this long to finish on SIGTERM (60)")
    p.add_argument("--workdir", type=Path, help="scratch space for jobs (default: ./haco-work/ID)")
    p.add_argument("--log-dir", type=Path, help="jobs' output files (default: WORKDIR/logs)")
    p.add_argument("--log-max-bytes", type=int, default=BYTES_MAX_DEFAULT, metavar="N",
                   help="per attempt; past it the oldest output is dropped (64 MiB)")
    p.add_argument("--log-keep", type=float, default=KEEP_S_DEFAULT / 86400, metavar="DAYS",
                   help="logs of attempts that ended longer ago are removed (7)")
    p.add_argument("--log-budget-bytes", type=int, default=BUDGET_BYTES_DEFAULT, metavar="N",
                   help="all logs together; past it the oldest attempts' logs go first (10 GiB)")
    p.add_argument("--log-sweep-interval", type=float, default=600.0, metavar="S",
                   help="how often log retention runs (600)")
    p.add_argument("--log-level", default=os.environ.get("HACO_LOG_LEVEL", "info"))


def config_from_args(args: argparse.Namespace, env: dict[str, str]) -> WorkerConfig:
    urls = getattr(args, "coordinators", None) or env.get("HACO_COORDINATORS") or DEFAULT_COORDINATORS
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    return WorkerConfig(
        coordinators=tuple(u.strip() for u in urls.split(",") if u.strip()), worker_id=worker_id,
        capacity=args.capacity or os.cpu_count() or 1, tags=tuple(t.strip() for t in args.tags.split(",") if t.strip()),
        drain_timeout_s=args.drain_timeout, workdir=args.workdir or Path("haco-work") / worker_id,
        token=_token(args, env), ca_file=getattr(args, "ca_file", None) or env.get("HACO_CA_FILE") or None,
        client_cert=getattr(args, "client_cert", None) or env.get("HACO_CLIENT_CERT") or None,
        client_key=getattr(args, "client_key", None) or env.get("HACO_CLIENT_KEY") or None,
        log_dir=getattr(args, "log_dir", None), log_bytes_max=getattr(args, "log_max_bytes", BYTES_MAX_DEFAULT),
        log_keep_s=getattr(args, "log_keep", KEEP_S_DEFAULT / 86400) * 86400,
        log_budget_bytes=getattr(args, "log_budget_bytes", BUDGET_BYTES_DEFAULT),
        log_sweep_s=getattr(args, "log_sweep_interval", 600.0), overrides=_overrides(args))


def _overrides(args: argparse.Namespace) -> Overrides:
    gpus_text = getattr(args, "gpus", None)
    gpus: tuple[int, ...] | None = None
    if gpus_text is not None:
        try:
            gpus = () if gpus_text.strip().lower() in ("", "none") else tuple(
                int(g) for g in gpus_text.split(",") if g.strip())
        except ValueError:
            raise ValueError(f"--gpus takes device indices like 0,1 or 'none', not {gpus_text!r}") from None
    o = Overrides(cpus=getattr(args, "cpus", None), memory_gb=getattr(args, "memory_gb", None), gpus=gpus,
                  reserve_cpus=getattr(args, "reserve_cpus", 0) or 0,
                  reserve_memory_gb=getattr(args, "reserve_memory_gb", 0.0) or 0.0,
                  probe_timeout_s=getattr(args, "probe_timeout", 10.0) or 10.0)
    if (o.cpus is not None and o.cpus < 0) or (o.memory_gb is not None and o.memory_gb < 0) \
            or o.reserve_cpus < 0 or o.reserve_memory_gb < 0 or o.probe_timeout_s <= 0:
        raise ValueError("--cpus, --memory-gb and the reserves must not be negative, --probe-timeout positive")
    return o


def _token(args: argparse.Namespace, env: dict[str, str]) -> str | None:
    token = getattr(args, "token", None) or env.get("HACO_TOKEN")
    path = getattr(args, "token_file", None) or env.get("HACO_TOKEN_FILE")
    if not token and path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read token file {path}: {exc.strerror}") from None
    return token or None


def run_from_args(args: argparse.Namespace) -> int:
    from haco.logs import configure

    configure(args.log_level)
    try:
        cfg = config_from_args(args, dict(os.environ))
        cfg.validate()
        from haco.security.tls import client_context
        client_context(cfg.ca_file, cfg.client_cert, cfg.client_key)  # unreadable files: a usage error now
    except (ValueError, OSError) as exc:  # ssl.SSLError is an OSError
        print(f"haco: error: {exc}", file=sys.stderr)
        return 64
    return asyncio.run(_serve(cfg))


async def _serve(cfg: WorkerConfig) -> int:
    agent = Agent(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_drain)
    log.info("worker starting worker=%s capacity=%d coordinators=%s", cfg.worker_id, cfg.capacity,
             ",".join(cfg.coordinators))
    return await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m haco.worker.agent`: the `haco worker` flags alone."""
    parser = argparse.ArgumentParser(prog="python -m haco.worker.agent", description="Run one haco worker.")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
