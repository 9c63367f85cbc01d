"""One cell from start to end (``run_cell``): skipped if already finished, else its job run on a claimed device in
its MLflow run, closed FINISHED, FAILED (the cell fails alone) or KILLED (Ctrl-C, SIGTERM, a preemption), with one
console line and the ``Outcome`` returned. ``SweepTask`` runs a sweep's cells in its tasks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from harness.core.console import configure_console
from harness.core.errors import HarnessError
from harness.core.names import Tag
from harness.core.runtime import (
    claimed_device,
    configure_threads,
    device_name,
    git_commit,
    package_versions,
    select_device,
)
from harness.run import parts
from harness.run.cell import Cell, task_name, relative
from harness.run.preflight import check_environment
from harness.run.jobs.context import JobContext
from harness.run import cell_claim, signals
from harness.run.outcome import Outcome
from harness.run.disk import check_cell_paths, check_space, disk_full
from harness.tracking import store as tracking
from harness.tracking.credentials import redact_file, redacted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepContext:
    """What a sweep's task knows of its sweep: its id, its number of tasks, its parent run, the cells run at once."""

    id: str
    size: int
    parent_run_id: str | None
    workers: int = 1


class SweepTask:
    """The task the sweeper gives its launcher: task i runs the cell the sweeper built and named for it, with the
    sweep's context. Launchers send it to their workers (pickled, like any Hydra task function): the facts of the
    sweep travel with the task, not through the environment."""

    def __init__(self, sweep: SweepContext, tasks: Sequence) -> None:  # the plan's tasks (harness.sweep.plan.PlannedTask)
        self.sweep, self.tasks = sweep, tuple(tasks)

    def __call__(self, cfg: DictConfig) -> dict:
        hc = HydraConfig.get()
        index = int(hc.job.num)
        task = self.tasks[index]
        if list(task.overrides) != list(hc.overrides.task):
            raise RuntimeError(f"task {index} was launched with {list(hc.overrides.task)}, planned as {task.overrides}")
        configure_console(bool(cfg.get("verbose", False)))
        outcome = run_cell(task.cell, Path(hc.runtime.output_dir), label=f"cell {index + 1}/{self.sweep.size} {task.label}",
                           index=index, sweep=self.sweep, name=task.name)
        return asdict(outcome)


def run_cell(cell: Cell, output_dir: Path | None = None, *, label: str | None = None, index: int | None = None,
             sweep: SweepContext | None = None, name: str | None = None) -> Outcome:
    """One cell: skipped if finished, else its job run under the cell's claim, on a claimed device, in its run."""
    name = name or cell.run_name
    task = task_name(name, cell)  # the run name, and which part
    label = label or task
    try:
        uri, done = _ready(cell, label, sweep)
        if done is None:
            with signals.handled(), cell_claim.claimed(cell, label) as waited:
                done = _finished(cell, uri) if waited else None  # the other process may have finished it
                if done is not None:
                    return _skipped(label, index, task, done)
                with claimed_device(select_device(cell.device)) as device:
                    run, opened = _open_run(cell, device, uri, name, sweep)
                    if opened == parts.FINISHED:
                        print(f"[skip] {label}: its cell was finished by its parts (run {run.run_id})")
                        return Outcome(index, task, "SKIPPED", run_id=run.run_id)
                    ctx = JobContext(cell=cell, device=device, run=run, label=label,
                                     parallel=sweep is not None and sweep.workers > 1, index=index)
                    try:
                        if opened == parts.CREATED:  # of a cell in parts, only the part that made the run logs these
                            _log_config(run, cell, output_dir)
                        cell.spec.run(ctx)
                    except KeyboardInterrupt as err:
                        return _killed(ctx, task, err)
                    except BaseException as err:  # noqa: BLE001 - the cell fails alone, with its message on its run
                        return _failed(ctx, task, err, uri)
                    return _done(ctx, task)
    except HarnessError as err:
        print(f"[failed] {label}: {err}", file=sys.stderr)
        return Outcome(index, task, "FAILED", error=str(err))
    except KeyboardInterrupt as err:  # before the run existed (or while it was being closed)
        print(f"[killed] {label}: interrupted ({err}) before its run was open", file=sys.stderr)
        return Outcome(index, task, "KILLED", error=f"interrupted ({str(err) or 'Ctrl-C'})",
                       preempted=isinstance(err, signals.Preempted))
    return _skipped(label, index, task, done)


def _ready(cell: Cell, label: str, sweep: SweepContext | None) -> tuple[str, object]:
    """The checks before any work (environment, paths, and for a cell to run, disk space): the store's URI and the
    cell's finished run, if any. A single run marks KILLED the runs of this cell left RUNNING by dead processes (a
    sweep does it for its experiment before it starts)."""
    check_environment(cell)
    check_cell_paths(cell)
    uri = tracking.tracking_uri(cell.tracking.uri)
    done = _finished(cell, uri)
    if done is None:
        check_space(cell, uri)
        if sweep is None:
            for run_id in tracking.reconcile_orphans(uri, cell.tracking.experiment, cell.key):
                print(f"[reconciled] {label}: run {run_id} of this cell was left RUNNING by a process that ended "
                      "(killed or crashed): marked KILLED")
    return uri, done


def _finished(cell: Cell, uri: str):
    """The cell's finished run, or None (always None with force=true)."""
    return None if cell.force else tracking.finished_run(uri, cell.tracking.experiment, cell.key)


def _skipped(label: str, index: int | None, task: str, done) -> Outcome:
    print(f"[skip] {label}: finished run {done.info.run_id} has the same settings (force=true reruns it)")
    return Outcome(index, task, "SKIPPED", run_id=done.info.run_id)


def out_of_memory(cell: Cell, device, err: BaseException) -> str | None:
    """One line for a device that ran out of memory (torch.OutOfMemoryError, CUDA's included), naming the smaller
    batch sizes that fit; None for any other error. The images sampled before it stay in the cell's folder."""
    import torch  # reason: the runner's module is imported by the command line before torch is needed

    if not isinstance(err, torch.OutOfMemoryError):
        return None
    what = (str(err).strip().splitlines() or ["out of memory"])[0][:160]
    b, mb = cell.batch_size, int(cell.metrics.get("batch_size") or cell.batch_size)
    return (f"out of memory on {device} at batch_size={b} ({what}): rerun with batch_size={max(1, b // 2)} (or "
            f"metrics.batch_size={max(1, mb // 2)} if it ran out while scoring); the images sampled so far stay in "
            f"{relative(cell.images_dir)} and are not sampled again.")


def _preempted_run(cell: Cell, uri: str) -> str | None:
    """The id of the cell's newest run if its Slurm task was preempted (KILLED, tagged ``preempted``), else None."""
    found = tracking.newest_run(uri, cell.tracking.experiment, f"tags.{Tag.CELL_KEY} = '{cell.key}'")
    if found is None or found.info.status != "KILLED" or Tag.PREEMPTED not in found.data.tags:
        return None
    return found.info.run_id


def _open_run(cell: Cell, device, uri: str, name: str, sweep: SweepContext | None) -> tuple[tracking.Run, str]:
    """The cell's run and how it was got (harness.run.parts: CREATED, REOPENED after a preemption, or a part's
    JOINED/FINISHED), tagged with what the cell is and where it runs."""
    threads = configure_threads(cell.threads, sweep.workers if sweep else 1)
    tags = {
        Tag.KIND: "cell", Tag.CELL_KEY: cell.key, Tag.CELL_SERIES: cell.series_key, Tag.SWEEP_ID: sweep.id if sweep else None,
        Tag.DEVICE: str(device), Tag.DEVICE_NAME: device_name(device), Tag.THREADS: threads,
        Tag.CELL_DIR: relative(cell.images_dir),
        **{Tag.INPUTS_PREFIX + k: v for k, v in cell.inputs.items()},
        **tracking.source_tags(cell.description), **({Tag.REHEARSAL: "true"} if cell.rehearsal else {}),
        **{f"version.{k}": v for k, v in package_versions().items()}, Tag.GIT_COMMIT: git_commit(),
    }
    parent_run_id = sweep.parent_run_id if sweep else None
    if cell.part is not None:
        return parts.open_run(cell, uri, name, tags, parent_run_id)
    preempted = _preempted_run(cell, uri) if tracking.slurm_job_id() else None
    if preempted is not None:  # resumed from its shards in the run its preempted task closed
        return tracking.Run.reopen(uri, preempted, tags), parts.REOPENED
    return tracking.Run.start(uri, cell.tracking.experiment, name, cell.params(), tags, parent_run_id), parts.CREATED


def _log_config(run: tracking.Run, cell: Cell, output_dir: Path | None) -> None:
    run.log_dict(redacted(cell.config), "config.yaml")
    if output_dir is not None:
        for path in sorted((output_dir / ".hydra").glob("*.yaml")):
            run.log_text(redact_file(path), f"hydra/{path.name}")


def _killed(ctx: JobContext, task: str, err: KeyboardInterrupt) -> Outcome:
    """Ctrl-C, SIGTERM or a preemption while the job ran: the run closed KILLED."""
    cell, run = ctx.cell, ctx.run
    how = f"interrupted ({str(err) or 'Ctrl-C'})"
    if cell.part is not None:
        parts.part_failed(cell, run, "killed", how)
    preempted = isinstance(err, signals.Preempted)
    why = ("the sweep submits the cell again, which resumes in this run" if preempted else
           "Ctrl-C or SIGTERM (a scheduler's time limit, docker stop, kill)")
    run.set_tags({Tag.ERROR: f"{how}: {why}"})
    run.end("KILLED")
    print(f"[{'preempted' if preempted else 'killed'}] {ctx.label}: {how} (run {run.run_id}, marked KILLED)",
          file=sys.stderr)
    return Outcome(ctx.index, task, "KILLED", error=how, run_id=run.run_id, preempted=preempted)


def _failed(ctx: JobContext, task: str, err: BaseException, uri: str) -> Outcome:
    """The job raised: the run closed FAILED with one line (out of memory and a full disk named as such)."""
    cell, run = ctx.cell, ctx.run
    known = out_of_memory(cell, ctx.device, err) or disk_full(err, cell, uri)  # one line for these, no traceback
    message = str(err) if isinstance(err, HarnessError) and not known else known or f"{type(err).__name__}: {err}"
    try:
        if cell.part is not None:
            parts.part_failed(cell, run, "failed", message)
        run.fail(HarnessError(known) if known else err)
    except Exception:  # a store on the full disk: the run stays RUNNING, reconciled by the cell's next run
        if not known:
            raise
    if not isinstance(err, HarnessError) and not known:
        log.exception("cell %s failed", task)
    print(f"[failed] {ctx.label}: {message} (run {run.run_id})", file=sys.stderr)
    return Outcome(ctx.index, task, "FAILED", error=message, run_id=run.run_id)


def _done(ctx: JobContext, task: str) -> Outcome:
    """The job returned: the run closed FINISHED (a part that did not finish its cell leaves it open)."""
    run = ctx.run
    if ctx.keep_open:
        print(f"[part done] {ctx.label}: {ctx.summary} (run {run.run_id})", flush=True)
        return Outcome(ctx.index, task, "FINISHED", summary=ctx.summary, run_id=run.run_id)
    run.end("FINISHED")
    print(f"[done] {ctx.label}: {ctx.summary} (run {run.run_id})", flush=True)
    return Outcome(ctx.index, task, "FINISHED", summary=ctx.summary, run_id=run.run_id, headline=ctx.headline)
