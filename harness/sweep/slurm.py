"""A Hydra launcher that submits a sweep's tasks to Slurm as one array (submitit's executor) and follows each task to its
end (``hydra/launcher=slurm``): finished cells are skipped before submission, each task is collected as it ends, one
that leaves the queue without a result is recorded KILLED, a preempted one is submitted again, and Ctrl-C or SIGTERM
cancels the array (docs/cluster.md)."""

from __future__ import annotations

import getpass
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from harness.core.names import Tag
from harness.run import signals
from harness.sweep.launcher import _execute, _reported
from harness.run.outcome import Outcome
from harness.tracking import store as tracking

log = logging.getLogger(__name__)

# submitit's executor-independent parameters; the others are Slurm's (slurm_<name>)
BASE_PARAMS = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
               "stderr_to_stdout"}
POLL_S = 2.0  # how often the queue is read
GONE_GRACE_S = 15.0  # a task out of the queue without a result file yet: its result may still be on its way (NFS)
STOP_WAIT_S = 120.0  # after a stop: how long the sweep waits for its cancelled tasks to end
CONSOLE_LINE = ("[done]", "[part done]", "[failed]", "[killed]", "[skip]", "[wait]", "[preempted]")
ACCOUNTING_FIX = ("Slurm accounting is off (sacct: {why}): the sweep still finds a task that dies without a result "
                  "(from squeue), but not why it died; for the end state of every task set AccountingStorageType="
                  "accounting_storage/slurmdbd in slurm.conf (docs/cluster.md)")


# --- the task, in the Slurm job ----------------------------------------------------------------------------------

class SlurmTask:
    """What each Slurm task runs: the sweep's task ``idx`` as Hydra's launchers run a job (harness.sweep.launcher), with
    the pre-timeout/preemption signal (USR2) turned into ``signals.Preempted`` inside the cell instead of submitit's
    requeue, which would end the cell with ``SystemExit``."""

    def __init__(self, hydra_context: HydraContext, config: DictConfig, task_function: TaskFunction,
                 singleton_state: dict) -> None:
        self.hydra_context, self.config, self.task_function = hydra_context, config, task_function
        self.singleton_state = singleton_state

    def __call__(self, idx: int, overrides: list[str]) -> JobReturn:
        setup_globals()
        Singleton.set_state(self.singleton_state)
        signal.signal(signal.SIGUSR2, signals.on_preempt)
        try:
            ret = _execute(idx, overrides, self.hydra_context, self.config, self.task_function)
        except signals.Preempted as err:  # while Hydra set the job up, before its cell began
            outcome = Outcome(idx, " ".join(overrides), "KILLED", error=str(err), preempted=True)
            ret = _reported(overrides, Path(str(self.config.hydra.sweep.dir)) / str(idx), outcome)
        finally:
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the cell's run is closed: nothing left to save
        ret.hydra_cfg = None
        value = getattr(ret, "_return_value", None)
        if signals.preempted and isinstance(value, dict) and value.get("status") == "KILLED":
            value["preempted"] = True
            if value.get("run_id"):  # closed KILLED by the runner: marked preempted, to be resumed in the same run
                run = tracking.Run(tracking.tracking_uri(self.config.tracking.get("uri")), value["run_id"])
                count = int(run.client.get_run(run.run_id).data.tags.get(Tag.PREEMPTED, "0")) + 1
                run.set_tags({Tag.PREEMPTED: count})
        return ret


# --- Slurm's view --------------------------------------------------------------------------------------------------

def _command(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def accounting() -> str | None:
    """None when sacct answers, else why not (its first line)."""
    done = _command(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"])
    if done is None:
        return "sacct did not answer"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0].removeprefix("sacct: ")
    return None


def queue() -> dict[str, str] | None:
    """This user's tasks in Slurm's queue, array tasks one by one: job id -> state; None when squeue fails."""
    done = _command(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"])
    if done is None or done.returncode != 0:
        return None
    return dict(line.split("|", 1) for line in done.stdout.splitlines() if "|" in line)


def end_state(job_id: str) -> str | None:
    """Slurm's record of an ended task, e.g. "CANCELLED by 0, exit code 0:15", or None without accounting."""
    done = _command(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,ExitCode"])
    if done is None or done.returncode != 0:
        return None
    lines = [line.split("|") for line in done.stdout.splitlines() if "|" in line]
    return f"{lines[-1][0]}, exit code {lines[-1][1]}" if lines else None


def cancel(job_ids: Sequence[str]) -> None:
    if job_ids:
        _command(["scancel", *job_ids])


def reconcile_ended_jobs(uri: str, experiment: str, job_ids: Sequence[str] | None = None) -> dict[str, str]:
    """Mark KILLED the RUNNING runs whose Slurm job has ended (whatever host ran them): those of ``job_ids``, or every
    RUNNING run with a job id that is not in the queue. Returns {job id: run id}; nothing when squeue fails."""
    wanted = f" and tags.{Tag.SLURM_JOB_ID} = '{job_ids[0]}'" if job_ids and len(job_ids) == 1 else ""
    live: list = []  # the queue, read once, after the search: a task that starts meanwhile is in it

    def dead(run) -> str | None:
        job = run.data.tags.get(Tag.SLURM_JOB_ID)
        if not job:
            return None
        if job_ids is None:
            live[:] = live or [queue()]
            if live[0] is None or job in live[0]:  # squeue failed, or the task is still queued or running
                return None
        elif job not in job_ids:
            return None
        return (f"Slurm job {job} ended without closing the run (cancelled, killed or its node failed); marked KILLED "
                "by a sweep")

    return {run.data.tags[Tag.SLURM_JOB_ID]: run.info.run_id
            for run in tracking.kill_dead_runs(uri, experiment, wanted, dead)}


# --- the launcher --------------------------------------------------------------------------------------------------

@dataclass
class Submitted:
    """A task submitted to Slurm and followed to its end (a preempted one is submitted again: ``attempts``)."""

    idx: int
    overrides: list[str]
    job: Any  # submitit's Job
    attempts: int = 1
    gone_since: float | None = None
    lines: set = field(default_factory=set)


class SlurmLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        self.params = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                       for k, v in params.items()}
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.accounting_off: str | None = None  # why sacct does not answer, if it does not

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    # what the sweeper says of the sweep
    @staticmethod
    def describe(config: DictConfig, cells: int) -> str:
        p = config.hydra.launcher
        at_once = min(cells, int(p.get("array_parallelism") or cells)) or 1
        return (f"Slurm runs up to {at_once} at once (partition {p.get('partition') or 'default'}, "
                f"{p.get('cpus_per_task') or 1} CPU(s) and {p.get('gpus_per_node') or 0} GPU(s) per task)")

    def _executor(self):
        import submitit  # lazy: only a sweep on Slurm needs it

        params = dict(self.params)
        params.pop("_target_", None)
        folder = params.pop("submitit_folder")
        retries = int(params.pop("max_num_timeout", 0) or 0)
        self.retries = retries
        executor = submitit.AutoExecutor(cluster="slurm", folder=folder, slurm_max_num_timeout=retries)
        executor.update_parameters(**{k if k in BASE_PARAMS else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def _label(self, idx: int, overrides: Sequence[str]) -> str:
        planned = getattr(self.task_function, "tasks", None)
        if planned is None:
            return " ".join(overrides)
        return f"cell {idx + 1}/{len(planned)} {planned[idx].label}"

    def _skipped(self, idx: int, overrides: list[str], sweep_dir: Path, seen: set) -> JobReturn | None:
        """A finished cell (a finished run with its key), reported without a task; None otherwise."""
        planned = getattr(self.task_function, "tasks", None)
        if planned is None:
            return None
        cell = planned[idx].cell
        if cell.force:
            return None
        uri = tracking.tracking_uri(cell.tracking.uri)
        done = tracking.finished_run(uri, cell.tracking.experiment, cell.key)
        if done is None:
            return None
        if cell.key not in seen:  # a cell in parts: one line
            seen.add(cell.key)
            print(f"[skip] {self._label(idx, overrides)}: finished run {done.info.run_id} has the same settings "
                  "(force=true reruns it)", flush=True)
        outcome = Outcome(idx, " ".join(overrides), "SKIPPED", run_id=done.info.run_id)
        return _reported(overrides, sweep_dir / str(idx), outcome)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        logging.getLogger("submitit").setLevel(logging.ERROR)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        uri, experiment = tracking.store_of(self.config)
        try:
            fixed = reconcile_ended_jobs(uri, experiment)
            if fixed:
                print(f"note: {len(fixed)} run(s) left RUNNING by Slurm jobs that have ended were marked KILLED",
                      flush=True)
        except Exception as err:  # noqa: BLE001 - the sweep goes on; the next one reconciles
            log.warning("could not mark the runs of ended Slurm jobs: %s", err)
        results: dict[int, JobReturn] = {}
        todo, seen = [], set()
        for i, overrides in enumerate(job_overrides):
            idx, overrides = initial_job_idx + i, list(overrides)
            skipped = self._skipped(idx, overrides, sweep_dir, seen)
            if skipped is not None:
                results[idx] = skipped
            else:
                todo.append((idx, overrides))
        if not todo:
            return [results[i] for i in sorted(results)]
        why = self.accounting_off = accounting()
        if why is not None:
            print("note: " + ACCOUNTING_FIX.format(why=why), file=sys.stderr, flush=True)

        executor = self._executor()
        task = SlurmTask(self.hydra_context, self.config, self.task_function, Singleton.get_state())
        with executor.batch():
            submitted = [(idx, overrides, executor.submit(task, idx, overrides)) for idx, overrides in todo]
        tasks = {job.job_id: Submitted(idx, overrides, job) for idx, overrides, job in submitted}
        ids = sorted(tasks)
        print(f"submitted {len(tasks)} task(s) to Slurm: job {ids[0].split('_')[0]}"
              f"{' (array)' if '_' in ids[0] else ''}", flush=True)

        stop: list[int] = []

        def on_stop(signum, frame) -> None:
            if not stop:
                stop.append(signum)
                signals.note(signum)

        previous = {signum: signal.signal(signum, on_stop) for signum in signals.STOP_SIGNALS}
        cancelled_at: float | None = None
        try:
            while tasks:
                if stop and cancelled_at is None:
                    cancelled_at = time.monotonic()
                    print(f"stopping: cancelling {len(tasks)} task(s) (scancel)", file=sys.stderr, flush=True)
                    cancel(list(tasks))
                live = queue()
                for job_id, t in list(tasks.items()):
                    ret = self._collect(t, live, uri, experiment, sweep_dir, stop)
                    if ret is None:
                        continue
                    del tasks[job_id]
                    if self._preempted(ret) and not stop and t.attempts <= self.retries:
                        job = executor.submit(task, t.idx, t.overrides)
                        print(f"[preempted] {self._label(t.idx, t.overrides)}: resubmitted as Slurm job {job.job_id} "
                              f"(attempt {t.attempts + 1}); it resumes from its shards in the same run", flush=True)
                        tasks[job.job_id] = Submitted(t.idx, t.overrides, job, t.attempts + 1)
                        continue
                    results[t.idx] = ret
                if tasks and cancelled_at is not None and time.monotonic() - cancelled_at > STOP_WAIT_S:
                    for job_id, t in tasks.items():
                        results[t.idx] = self._lost(t, "still in Slurm's queue after scancel", uri, experiment,
                                                    sweep_dir, stop, mark=False)
                    break
                if tasks:
                    time.sleep(POLL_S)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return [results[i] for i in sorted(results)]

    @staticmethod
    def _preempted(ret: JobReturn) -> bool:
        value = getattr(ret, "_return_value", None)
        return isinstance(value, dict) and bool(value.get("preempted"))

    def _echo(self, t: Submitted) -> None:
        """The task's own console lines ([done], [failed], ...), from its log, on the sweep's console."""
        for path in (t.job.paths.stdout, t.job.paths.stderr):
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith(CONSOLE_LINE) and line not in t.lines:
                    t.lines.add(line)
                    print(line, flush=True)

    def _collect(self, t: Submitted, live: dict[str, str] | None, uri: str, experiment: str, sweep_dir: Path,
                 stop: list[int]) -> JobReturn | None:
        """The task's JobReturn once it has ended (its result, or its death recorded), else None."""
        from submitit.core.utils import pickle_load  # lazy: only a sweep on Slurm needs it

        result = Path(t.job.paths.result_pickle)
        if result.exists():
            self._echo(t)
            try:
                kind, value = pickle_load(result)
            except Exception as err:  # noqa: BLE001 - a result being written (NFS): read it at the next poll
                if time.monotonic() - (t.gone_since or time.monotonic()) < GONE_GRACE_S:
                    t.gone_since = t.gone_since or time.monotonic()
                    return None
                return self._lost(t, f"its result could not be read ({err})", uri, experiment, sweep_dir, stop)
            if kind == "success" and isinstance(value, JobReturn):
                return value
            error = str(value).strip().splitlines()[-1] if str(value).strip() else kind
            outcome = Outcome(t.idx, " ".join(t.overrides), "FAILED", error=f"its Slurm job {t.job.job_id}: {error}")
            print(f"[failed] {self._label(t.idx, t.overrides)}: {outcome.error}", flush=True)
            return _reported(t.overrides, sweep_dir / str(t.idx), outcome)
        if live is None or t.job.job_id in live:  # queued, running, or squeue did not answer: look again later
            t.gone_since = None
            return None
        if t.gone_since is None:
            t.gone_since = time.monotonic()
            return None
        if time.monotonic() - t.gone_since < GONE_GRACE_S:
            return None
        return self._lost(t, "ended without a result", uri, experiment, sweep_dir, stop)

    def _lost(self, t: Submitted, what: str, uri: str, experiment: str, sweep_dir: Path, stop: list[int],
              mark: bool = True) -> JobReturn:
        """A task that ended without a result: KILLED, with Slurm's end state, its run (if it opened one) KILLED."""
        self._echo(t)
        state = end_state(t.job.job_id)
        error = f"its Slurm job {t.job.job_id} {what}"
        if state:
            error += f" ({state})"
        else:  # a pending array task cancelled before it started leaves no record
            error += " (its end state is unknown: Slurm accounting is off)" if self.accounting_off else \
                " (no record in Slurm's accounting: it never started)"
        if stop:
            error += f"; the sweep was stopped ({signals.name(stop[0])})"
        outcome = Outcome(t.idx, " ".join(t.overrides), "KILLED", error=error)
        try:
            fixed = reconcile_ended_jobs(uri, experiment, [t.job.job_id]) if mark else {}
            if fixed:
                outcome.run_id = fixed[t.job.job_id]
                outcome.error += f"; run {outcome.run_id} marked KILLED"
        except Exception as err:  # noqa: BLE001 - the next sweep reconciles it
            log.warning("could not mark the run of Slurm job %s: %s", t.job.job_id, err)
        print(f"[killed] {self._label(t.idx, t.overrides)}: {outcome.error}", flush=True)
        return _reported(t.overrides, sweep_dir / str(t.idx), outcome)
