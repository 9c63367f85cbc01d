"""A Hydra launcher that runs the cells of a sweep in worker processes on this machine, each cell alone.

Like Hydra's joblib launcher it keeps ``n_jobs`` worker processes (default: one per GPU on a CUDA machine, else one
per CPU core), each running one cell at a time. Unlike it, a worker that dies (``kill -9``, a segfault, the OOM killer)
takes only its own cell down: the launcher records that cell as FAILED (its MLflow run is marked KILLED), starts a
new worker and runs the remaining cells. Ctrl-C stops the sweep, and SIGTERM is passed on to the workers, whose runs
are then marked KILLED.
"""

from __future__ import annotations

import json
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

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One worker per GPU on a CUDA machine, else one per CPU core."""
    import torch

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
    """Run one job as Hydra's launchers do: the job's config, its folder, its logging."""
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _worker(conn, payload: bytes) -> None:
    """A worker process: set up once, then run the jobs it is sent until told to stop (None)."""
    hydra_context, config, task_function, singleton_state = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if message is None:
            return
        idx, overrides = message
        ret = _execute(idx, overrides, hydra_context, config, task_function)
        ret.hydra_cfg = None  # the parent does not need it
        conn.send_bytes(cloudpickle.dumps(ret))


def _reported(overrides: list[str], folder: Path, outcome) -> JobReturn:
    """A job that did not return (its worker died, or the sweep stopped first), as Hydra's result: COMPLETED with the
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
        jobs = deque((initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides))
        n = max(1, min(self.n_jobs or default_workers(), len(jobs)))
        payload = cloudpickle.dumps((self.hydra_context, self.config, self.task_function, Singleton.get_state()))
        ctx = mp.get_context("spawn")
        results: dict[int, JobReturn] = {}
        busy: dict[Any, tuple[Any, int, list[str]]] = {}  # connection -> (process, job index, overrides)

        def start_worker():
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child, payload), daemon=True)
            process.start()
            child.close()
            return parent, process

        def give_work(conn, process) -> None:
            if jobs:
                idx, overrides = jobs.popleft()
                conn.send((idx, overrides))
                busy[conn] = (process, idx, overrides)
            else:
                conn.send(None)
                process.join(timeout=30)

        cancelled: list[tuple[int, list[str]]] = []

        def forward_sigterm(signum, frame):  # stop the sweep: the running cells are marked KILLED, no new cell starts
            cancelled.extend(jobs)
            jobs.clear()
            for process, _, _ in busy.values():
                if process.is_alive():
                    process.terminate()

        previous = signal.signal(signal.SIGTERM, forward_sigterm)
        try:
            for _ in range(n):
                give_work(*start_worker())
            while busy:
                for conn in wait(list(busy)):
                    process, idx, overrides = busy.pop(conn)
                    try:
                        results[idx] = cloudpickle.loads(conn.recv_bytes())
                        give_work(conn, process)
                    except (EOFError, OSError):  # the worker died while running this job
                        process.join(timeout=5)
                        results[idx] = self._crashed(idx, overrides, process.exitcode, sweep_dir, process.pid)
                        conn.close()
                        if jobs:
                            give_work(*start_worker())
        except KeyboardInterrupt:  # the workers got Ctrl-C too: their runs are marked KILLED; let them finish that
            for conn, (process, _, _) in busy.items():
                try:
                    conn.send(None)
                except OSError:
                    pass
                process.join(timeout=30)
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            for process, _, _ in busy.values():
                if process.is_alive():
                    process.terminate()
        for idx, overrides in cancelled:
            results[idx] = self._not_run(idx, overrides, sweep_dir)
        return [results[i] for i in sorted(results)]

    @staticmethod
    def _not_run(idx: int, overrides: list[str], sweep_dir: Path) -> JobReturn:
        """A job the sweep never started because it was stopped (SIGTERM): in the summary, with no run."""
        from .runner import OUTCOME_FILE, Outcome

        folder = sweep_dir / str(idx)
        folder.mkdir(parents=True, exist_ok=True)
        error = "not started: the sweep was stopped (SIGTERM)"
        outcome = Outcome(idx, " ".join(overrides), "KILLED", error=error)
        (folder / OUTCOME_FILE).write_text(json.dumps(asdict(outcome), indent=1))
        return _reported(overrides, folder, outcome)

    def _crashed(self, idx: int, overrides: list[str], exitcode: int | None, sweep_dir: Path, pid: int | None = None
                 ) -> JobReturn:
        """A job whose worker died: reported like a failed cell (outcome.json), its orphaned run marked KILLED."""
        from .runner import OUTCOME_FILE, Outcome

        how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit status {exitcode}"
        error = f"the worker process running this cell died ({how})"
        folder = sweep_dir / str(idx)
        folder.mkdir(parents=True, exist_ok=True)
        outcome = Outcome(idx, " ".join(overrides), "FAILED", error=error)
        try:
            from . import tracking
            from .sweep import sweep_store

            uri, experiment = sweep_store(self.config)
            tracking.reconcile_orphans(uri, experiment)
            run = tracking.run_of_process(uri, experiment, pid) if pid else None
            if run is not None:
                outcome.run_id, outcome.name = run.info.run_id, run.info.run_name or outcome.name
                error += f"; run {run.info.run_id} marked KILLED"
                outcome.error = error
        except Exception as err:  # noqa: BLE001 - the sweep goes on; the report reconciles later
            log.warning("could not mark the crashed cell's run: %s", err)
        (folder / OUTCOME_FILE).write_text(json.dumps(asdict(outcome), indent=1))
        print(f"[failed] cell {idx + 1} {outcome.name}: {error}", flush=True)
        return _reported(overrides, folder, outcome)
