"""Where a cohort's fits run: a local process pool or a Ray cluster; one task per patient.

* ``local``: :class:`concurrent.futures.ProcessPoolExecutor` (spawn) with ``workers`` processes,
  one patient per task. A worker that dies (SIGKILL, out of memory, a crash in native code) breaks
  the pool: the patient it ran is recorded as failed and a fresh pool continues. When several
  patients were running, which one killed the worker is unknown: each is rerun alone, and one that
  breaks the pool alone is the failure.
* ``ray``: the optional extra ``gbm[ray]``. ``address`` joins an existing cluster (checked to be
  reachable first); none starts a local cluster with ``num_cpus = workers``. One task
  (``num_cpus`` = threads per patient, no retries) per patient; tasks read the patient files and
  write their folders by path (shared storage on a real cluster), so Ray's object store holds only
  the small row dicts returned.

Threads: each task pins its thread count before the first kernel call (:func:`pin_threads`):
``RAYON_NUM_THREADS`` (the Rust core's rayon pool is created lazily on the first kernel call, so
the variable set in the task takes effect), ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (read by torch
at import) and ``torch.set_num_threads`` when torch is already imported, plus the BLAS pools via
threadpoolctl when installed. Each row records what the task's rayon pool used.

A task (:func:`fit_task`) never raises for a Python exception: a failed patient is a failed row
(:func:`gbm.jobs.cohort.table.failed_row`) with the error in one line and, unless it was bad input,
its traceback under the row's ``_traceback`` key.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gbm import _core, extras
from gbm.errors import InputError, require
from gbm.jobs.cohort.inputs import Job
from gbm.jobs.cohort.table import failed_row, row_from_report
from gbm.jobs.fit.run import fit_patient

__all__ = ["ENGINES", "Engine", "cores", "fit_task", "one_line", "pin_threads", "run_jobs",
           "run_local", "start_ray"]

#: Execution engines (``--engine``).
ENGINES = ("local", "ray")

Row = dict[str, Any]
OnRow = Callable[[Row], None]


@dataclass(frozen=True)
class Engine:
    """Where the fits run: ``name`` (:data:`ENGINES`), ``workers`` (patients at once),
    ``threads`` per patient and, for Ray, the ``address`` of a cluster to join (None: a local
    cluster this run starts)."""

    name: str
    workers: int
    threads: int
    address: str | None = None


def one_line(e: BaseException) -> str:
    """An exception in one line (bad input: its message; anything else: type and message)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, InputError):
        return text or "InputError"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- the task (runs in a worker)

def pin_threads(threads: int) -> None:
    """Pin this process's thread pools to ``threads`` (before the first kernel call)."""
    n = str(max(1, int(threads)))
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS"):
        os.environ[var] = n
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(n))
    with contextlib.suppress(ImportError):
        import threadpoolctl

        threadpoolctl.threadpool_limits(int(n))


def _quiet(_: str) -> None:
    pass


def fit_task(job: Job, threads: int | None = None, uncertainty: bool = False) -> Row:
    """Fit one patient; never raises for a Python exception (a failed row instead)."""
    if threads is not None:
        pin_threads(threads)
    t0 = time.perf_counter()
    tb = ""
    try:
        report = fit_patient(job.cfg, job.out, force=job.force, progress=False, printer=_quiet)
        row = row_from_report(job.pid, "ok", report, time.perf_counter() - t0, uncertainty)
    except Exception as e:  # noqa: BLE001 - one patient's failure is a row, not a stop
        row = failed_row(job.pid, one_line(e), time.perf_counter() - t0, uncertainty)
        tb = "" if isinstance(e, InputError) else traceback.format_exc()
    row["threads"] = int(_core.num_threads())
    row["_traceback"] = tb
    return row


def run_jobs(engine: Engine, ray: Any, jobs: Sequence[Job], on_row: OnRow,
             uncertainty: bool) -> None:
    """Run every job on ``engine`` (``ray``: the module from :func:`start_ray`); ``on_row``
    gets each patient's row as it finishes."""
    if not jobs:
        return
    if engine.name == "local":
        run_local(jobs, engine.workers, engine.threads, on_row, uncertainty)
    else:
        _run_ray(ray, jobs, engine.threads, engine.address is not None, uncertainty, on_row)


# ---------------------------------------------------------------- local process pool

_DIED = ("worker process died while fitting (killed by a signal, out of memory, or a crash in "
         "native code)")


def run_local(jobs: Sequence[Job], workers: int, threads: int, on_row: OnRow,
              uncertainty: bool = False, task: Callable[..., Row] = fit_task) -> None:
    """Run ``task(job, None, uncertainty)`` for each job on a spawn process pool of ``workers``
    processes pinned to ``threads`` threads each; ``on_row`` gets each returned row, or a failed
    row for a job whose worker died (see the module header)."""
    pending: deque[Job] = deque(jobs)
    suspects: deque[Job] = deque()  # in flight when a pool broke: each is rerun alone
    idle_breaks = 0  # pools that broke without finishing anything (e.g. workers cannot start)
    while pending or suspects:
        progressed = _PoolRound(workers, threads, on_row, uncertainty, task).run(pending,
                                                                                 suspects)
        idle_breaks = 0 if progressed else idle_breaks + 1
        if idle_breaks >= 3:  # the pool cannot run anything: fail the rest, do not spin
            for j in [*suspects, *pending]:
                on_row(failed_row(j.pid, "worker processes could not run (the process pool "
                                  "broke three times without finishing a patient)", None,
                                  uncertainty))
            return


class _PoolRound:
    """One process pool, used until the queues are empty or a worker dies (the pool breaks)."""

    def __init__(self, workers: int, threads: int, on_row: OnRow, uncertainty: bool,
                 task: Callable[..., Row]) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.workers, self.on_row, self.unc, self.task = workers, on_row, uncertainty, task
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                        initializer=pin_threads, initargs=(threads,))
        self.inflight: dict[Any, tuple[Job, float]] = {}
        self.broken: list[tuple[Job, float]] = []
        self.ok = True
        self.progressed = False

    def submit(self, queue: deque[Job]) -> None:
        from concurrent.futures.process import BrokenProcessPool

        j = queue.popleft()
        try:
            self.inflight[self.pool.submit(self.task, j, None, self.unc)] = (j, time.time())
        except BrokenProcessPool:
            queue.appendleft(j)
            self.ok = False

    def collect(self, f: Any) -> None:
        from concurrent.futures.process import BrokenProcessPool

        j, t0 = self.inflight.pop(f)
        try:
            row = f.result()
        except BrokenProcessPool:
            self.broken.append((j, t0))
            self.ok = False
            return
        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be unpickled
            row = failed_row(j.pid, one_line(e), time.time() - t0, self.unc)
        self.progressed = True
        self.on_row(row)

    def run(self, pending: deque[Job], suspects: deque[Job]) -> bool:
        """Work the queues; returns whether any patient finished (ok or failed)."""
        from concurrent.futures import FIRST_COMPLETED, wait

        try:
            while self.ok and (pending or suspects or self.inflight):
                if suspects:
                    if not self.inflight:
                        self.submit(suspects)
                else:
                    while self.ok and pending and len(self.inflight) < self.workers:
                        self.submit(pending)
                if self.inflight:
                    for f in wait(list(self.inflight), return_when=FIRST_COMPLETED).done:
                        self.collect(f)
            if not self.ok:  # every task still in flight fails with the pool
                for f in wait(list(self.inflight)).done:
                    self.collect(f)
                if len(self.broken) == 1:
                    j, t0 = self.broken[0]
                    self.on_row(failed_row(j.pid, _DIED, time.time() - t0, self.unc))
                    self.progressed = True
                else:
                    suspects.extendleft(j for j, _ in reversed(self.broken))
        except BaseException:
            _stop_pool(self.pool)
            raise
        self.pool.shutdown(wait=True)
        return self.progressed


def _stop_pool(pool: Any) -> None:
    """Cancel queued tasks and terminate the pool's worker processes (which this run started)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


# ---------------------------------------------------------------- Ray

def _import_ray() -> Any:
    extras.require("ray", "--engine ray")
    try:
        import ray
    except ImportError:
        raise InputError("the ray engine needs the optional extra: pip install 'gbm[ray]'") \
            from None
    return ray


def _check_address(address: str) -> None:
    """A joined cluster's GCS must accept a TCP connection (ray.init would retry for minutes)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    require(bool(sep) and bool(host) and port.isdigit(),
            f"--address: expected HOST:PORT (or ray://HOST:PORT, auto), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as e:
        raise InputError(f"--address {address}: cannot reach a Ray cluster there "
                         f"({e.strerror or e})") from None


def start_ray(address: str | None, workers: int) -> tuple[Any, bool]:
    """Connect to (or start) Ray; returns (ray, started_here). InputError if unreachable."""
    ray = _import_ray()
    if ray.is_initialized():
        return ray, False
    if address is not None:
        _check_address(address)
    try:
        if address is not None:
            with _stderr_unless_failed():  # Ray's C++ client logs every retry to fd 2
                ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        where = f"--address {address}" if address is not None else "local Ray cluster"
        raise InputError(f"{where}: cannot connect to Ray ({one_line(e)})") from None
    return ray, True


@contextlib.contextmanager
def _stderr_unless_failed() -> Iterator[None]:
    """Hold what is written to file descriptor 2 meanwhile; replay it unless an exception
    leaves (then the exception's one line is the whole story)."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                buf.seek(0)
                sys.stderr.write(buf.read().decode(errors="replace"))


def _run_ray(ray: Any, jobs: Sequence[Job], threads: int, joined: bool, unc: bool,
             on_row: OnRow) -> None:
    """One Ray task per patient; a task that Ray reports lost (worker killed) is a failed row."""
    remote = ray.remote(num_cpus=1, max_retries=0)(fit_task)
    if joined:  # reserve the CPUs each task uses, so Ray packs cores // threads tasks per node
        remote = remote.options(num_cpus=threads)
    refs = {remote.remote(j, threads, unc): (j, time.time()) for j in jobs}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for r in done:
                j, t0 = refs.pop(r)
                try:
                    on_row(ray.get(r))
                except Exception as e:  # noqa: BLE001 - RayError: worker crashed, node lost
                    on_row(failed_row(j.pid, f"ray task failed: {one_line(e)}",
                                      time.time() - t0, unc))
    except BaseException:
        for r in refs:
            with contextlib.suppress(Exception):
                ray.cancel(r, force=True)
        raise
