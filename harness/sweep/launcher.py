"""A Hydra launcher that runs the cells of a sweep in worker processes on this machine, each cell alone.

Like Hydra's joblib launcher it keeps ``n_jobs`` worker processes (default: one per GPU on a CUDA machine, else one
per CPU core), each running one cell at a time. Unlike it, a worker that dies (``kill -9``, a segfault, the OOM killer)
takes only its own cell down: the launcher records that cell as FAILED (its MLflow run is marked KILLED), starts a
new worker and runs the remaining cells.

Ctrl-C and SIGTERM stop the sweep (harness.run.signals): no further cell starts, the signal is passed on to the workers,
whose running cells are marked KILLED, and the launcher returns every task's outcome, so that the sweep's summary
runs and its parent run is marked KILLED (harness.sweep.sweeper). A second signal kills the workers at once. Workers stop
when the sweep's process dies, ``kill -9`` included.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
from collections import deque
from dataclasses import asdict
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Sequence

import cloudpickle  # Hydra's state holds OmegaConf resolvers (closures), which pickle cannot send to a worker
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from harness.run import signals
from harness.run.outcome import Outcome
from harness.tracking import store as tracking

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One worker per GPU on a CUDA machine, else one per CPU core."""
    import torch  # lazy: torch takes seconds to import: only when the work needs it

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def workers_of(config: DictConfig) -> int:
    """The cells a sweep runs at once: ``n_jobs``, one per core or GPU by default, one under Hydra's in-process
    ``hydra/launcher=basic`` (which runs them one after the other; the rehearsal uses it)."""
    launcher = config.hydra.launcher
    if str(launcher.get("_target_", "")).endswith("BasicLauncher"):
        return 1
    n = launcher.get("n_jobs")
    return int(n) if n else default_workers()


def _execute(idx: int, overrides: Sequence[str], hydra_context: HydraContext, config: DictConfig,
             task_function: TaskFunction) -> JobReturn:
    """Run one task as Hydra's launchers run a job: its config (as the sweep's plan composed it), its folder, its logging."""
    planned = getattr(task_function, "tasks", None)  # a SweepTask: each task's config composed once, by the plan
    composed = planned[idx].config if planned is not None else None
    if composed is not None:
        sweep_config = composed.copy()
    else:
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _worker(conn, parent_pid: int) -> None:
    """A worker process: set up once, then run the tasks it is sent until told to stop (None).

    A stop signal raises only while a task runs (the cell's run is then marked KILLED by the runner); one that comes
    between tasks is noted, and every task sent after it is answered "not started". The worker stops when the sweep's
    process dies (``kill -9`` too): the running cell is marked KILLED and the worker exits without a traceback."""
    signals.install()
    signals.stop_raising()  # until a task runs
    signals.unblock()  # the launcher started this process with the stop signals held back
    signals.die_with_parent(parent_pid)
    try:
        hydra_context, config, task_function, singleton_state = cloudpickle.loads(conn.recv_bytes())
    except (EOFError, OSError):  # the sweep's process is gone
        return
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the sweep's process is gone
            return
        if message is None:
            return
        idx, overrides = message
        if signals.received is not None:
            ret = _stopped(idx, overrides, sweep_dir, signals.received)
        else:
            try:
                with signals.raising(True):
                    ret = _execute(idx, overrides, hydra_context, config, task_function)
            except KeyboardInterrupt as err:  # stopped while Hydra set the task up, before its cell began
                ret = _stopped(idx, overrides, sweep_dir, signals.signal_of(err))
        ret.hydra_cfg = None  # the parent does not need it
        try:
            conn.send_bytes(cloudpickle.dumps(ret))
        except OSError:  # the sweep's process is gone: the run is closed, nobody waits for the answer
            return


def _stopped(idx: int, overrides: list[str], sweep_dir: Path, signum: int) -> JobReturn:
    """A task the sweep never started because it was stopped: KILLED in the summary, with no run."""
    outcome = Outcome(idx, " ".join(overrides), "KILLED", error=f"not started: the sweep was stopped ({signals.name(signum)})")
    return _reported(overrides, sweep_dir / str(idx), outcome)


def _reported(overrides: list[str], folder: Path, outcome) -> JobReturn:
    """A task that did not return (its worker died, or the sweep stopped first), as Hydra's result: COMPLETED with the
    outcome as its value, like a cell that failed in its worker, so that Hydra's sweeper goes on to the summary (a
    FAILED JobReturn would make it raise, skipping the summary and leaving the parent run RUNNING)."""
    ret = JobReturn(overrides=overrides, cfg=None, hydra_cfg=None, working_dir=str(folder), task_name="")
    ret.status = JobStatus.COMPLETED
    ret.return_value = asdict(outcome)
    return ret


class CellLauncher(Launcher):
    def __init__(self, n_jobs: int | None = None) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        tasks = deque((initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides))
        n = max(1, min(self.n_jobs or default_workers(), len(tasks)))
        payload = cloudpickle.dumps((self.hydra_context, self.config, self.task_function, Singleton.get_state()))
        ctx = mp.get_context("spawn")
        results: dict[int, JobReturn] = {}
        busy: dict[Any, tuple[Any, int, list[str]]] = {}  # connection -> (process, job index, overrides)

        def start_worker():
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, os.getpid()), daemon=True)
            with signals.blocked():  # the worker starts with them held back until its handlers are in place
                process.start()
            child.close()
            # The payload (every task's config: over 64 KB) goes through the pipe, not spawn's start-up data: a worker
            # that dies before reading it leaves this write with a broken pipe, where spawn's write would block forever.
            with contextlib.suppress(OSError):  # give_work finds the worker dead
                parent.send_bytes(payload)
            return parent, process

        def give_work(conn, process) -> None:
            if not tasks:
                with contextlib.suppress(OSError):  # a worker that died meanwhile needs no goodbye
                    conn.send(None)
                process.join(timeout=30)
                return
            idx, overrides = tasks.popleft()
            try:
                conn.send((idx, overrides))
            except OSError:  # the worker died before it took the task (a stop signal while it started, kill -9)
                process.join(timeout=5)
                conn.close()
                if stop:
                    cancelled.append((idx, overrides))
                    return
                results[idx] = self._crashed(idx, overrides, process.exitcode, sweep_dir, process.pid)
                if tasks:
                    give_work(*start_worker())
                return
            busy[conn] = (process, idx, overrides)
            if stop:  # the sweep was stopped while this task was being handed out
                os.kill(process.pid, stop[0])

        cancelled: list[tuple[int, list[str]]] = []
        stop: list[int] = []  # the stop signal the sweep got

        def on_stop(signum, frame):
            """Ctrl-C or SIGTERM: no new cell starts; the running ones get the signal (a terminal's Ctrl-C reached them
            already: they ignore the second) and are marked KILLED. A second signal kills the workers at once; their
            runs are then marked KILLED below."""
            if stop:
                for process, _, _ in busy.values():
                    if process.is_alive():
                        process.kill()
                return
            stop.append(signum)
            signals.note(signum)
            cancelled.extend(tasks)
            tasks.clear()
            for process, _, _ in busy.values():
                if process.is_alive():
                    os.kill(process.pid, signum)

        previous = {signum: signal.signal(signum, on_stop) for signum in signals.STOP_SIGNALS}
        try:
            for _ in range(n):
                give_work(*start_worker())
            while busy:
                for conn in wait(list(busy)):
                    process, idx, overrides = busy.pop(conn)
                    try:
                        results[idx] = cloudpickle.loads(conn.recv_bytes())
                        give_work(conn, process)
                    except (EOFError, OSError):  # the worker died while running this task
                        process.join(timeout=5)
                        results[idx] = self._crashed(idx, overrides, process.exitcode, sweep_dir, process.pid,
                                                     stop[0] if stop else None)
                        conn.close()
                        if tasks:
                            give_work(*start_worker())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for process, _, _ in busy.values():
                if process.is_alive():
                    process.terminate()
        if stop:  # a worker stopped between opening its run and handing it to the runner leaves it RUNNING
            self._reconcile()
        for idx, overrides in cancelled:
            results[idx] = _stopped(idx, overrides, sweep_dir, stop[0])
        return [results[i] for i in sorted(results)]

    def _reconcile(self) -> list[str]:
        """Mark KILLED the runs left RUNNING by workers that have ended; a failure is a warning (the next sweep or
        report does it)."""
        try:
            return tracking.reconcile_orphans(*tracking.store_of(self.config))
        except Exception as err:  # noqa: BLE001 - the sweep goes on; the report reconciles later
            log.warning("could not mark the runs of ended workers: %s", err)
            return []

    def _crashed(self, idx: int, overrides: list[str], exitcode: int | None, sweep_dir: Path, pid: int | None = None,
                 stop: int | None = None) -> JobReturn:
        """A task whose worker died: reported like a failed cell, its orphaned run marked KILLED."""
        how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit status {exitcode}"
        error = f"the worker process running this cell died ({how})"
        outcome = Outcome(idx, " ".join(overrides), "KILLED" if stop else "FAILED", error=error)
        try:
            uri, experiment = tracking.store_of(self.config)
            fixed = tracking.reconcile_orphans(uri, experiment)
            run = tracking.run_of_process(uri, experiment, pid) if pid else None
            if run is not None and run.info.run_id in fixed:  # its cell's run, not one it had finished before
                outcome.run_id, outcome.name = run.info.run_id, run.info.run_name or outcome.name
                error += f"; run {run.info.run_id} marked KILLED"
                outcome.error = error
        except Exception as err:  # noqa: BLE001 - the sweep goes on; the report reconciles later
            log.warning("could not mark the crashed cell's run: %s", err)
        print(f"[{outcome.status.lower()}] cell {idx + 1} {outcome.name}: {error}", flush=True)
        return _reported(overrides, sweep_dir / str(idx), outcome)
