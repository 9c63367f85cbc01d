"""One cell from start to end: skip it if already finished, run its job on a claimed device inside an MLflow run,
and report the outcome: one console line, and the ``Outcome`` the job returns (in a sweep, to the sweeper through its
launcher: harness.sweep.sweeper).

A failing cell fails alone: its run is marked FAILED with the message, the other cells of a sweep go on, and the
sweep ends with a summary and a non-zero exit. Ctrl-C and SIGTERM (what SLURM time limits and ``docker stop`` send)
mark the run KILLED. In a sweep, the job runs the cell the sweeper built and named (``SweepTask``); a single run
builds its own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
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
from harness.run.cell import Cell, check_environment, job_name, relative
from harness.run.jobs.context import JobContext
from harness.run import cell_claim, signals
from harness.run.dryrun import print_plan
from harness.run.outcome import Outcome
from harness.run.space import check_space, disk_full
from harness.run.writable import check_cell_paths
from harness.tracking import store as tracking
from harness.tracking.credentials import redact_file, redacted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepContext:
    """What a sweep's job knows of its sweep: its id, its number of jobs, its parent run, the cells run at once."""

    id: str
    size: int
    parent_run_id: str | None
    workers: int = 1


class SweepTask:
    """The task the sweeper gives its launcher: for job i, ``run_job`` with the sweep's context and the cell the sweeper
    built and named for it. Launchers send it to their workers (pickled, like any Hydra task function): the facts of the
    sweep travel with the task, not through the environment."""

    def __init__(self, sweep: SweepContext, jobs: Sequence) -> None:  # the plan's jobs (harness.sweep.plan.PlannedJob)
        self.sweep, self.jobs = sweep, tuple(jobs)

    def __call__(self, cfg: DictConfig) -> dict:
        return run_job(cfg, self)


def run_job(cfg: DictConfig, task: SweepTask | None = None, pilot: Callable[[Cell], str] | None = None) -> dict:
    """The Hydra task: one cell, its outcome as a dict (Hydra's return value of the job). A single run exits non-zero
    on failure; in a sweep the failure is returned and the sweep goes on. ``pilot``: the planner's line of a dry run
    (harness.report.pilot, given by the command line for ``dry_run=true``)."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    index = int(hc.job.num) if multirun else None
    output_dir = Path(hc.runtime.output_dir)
    configure_console(bool(cfg.get("verbose", False)))
    if task is not None:  # the sweeper's job: its cell built and named by the sweeper
        job = task.jobs[index]
        if list(job.overrides) != list(hc.overrides.task):
            raise RuntimeError(f"job {index} was launched with {list(hc.overrides.task)}, planned as {job.overrides}")
        outcome = run_cell(job.cell, output_dir, label=f"cell {index + 1}/{task.sweep.size} {job.label}", index=index,
                           sweep=task.sweep, name=job.name)
        return asdict(outcome)
    printed = False  # run_cell prints its own [failed]/[killed] line
    try:
        cell = Cell.from_config(cfg)
    except HarnessError as err:
        outcome = Outcome(index, " ".join(hc.overrides.task), "FAILED", error=str(err))
    else:
        printed = True
        if cell.dry_run:
            print_plan([cell], pilot)
            return asdict(Outcome(index, job_name(cell.run_name, cell), "PLANNED"))
        outcome = run_cell(cell, output_dir, index=index)
    if not multirun and outcome.status in ("FAILED", "KILLED"):
        if not printed:
            print(f"error: {outcome.error}", file=sys.stderr)
        sys.exit((143 if "signal" in outcome.error else 130) if outcome.status == "KILLED" else 1 if outcome.run_id else 2)
    return asdict(outcome)


def run_cell(cell: Cell, output_dir: Path | None = None, *, label: str | None = None, index: int | None = None,
             sweep: SweepContext | None = None, name: str | None = None) -> Outcome:
    name = name or cell.run_name
    label = label or job_name(name, cell)
    try:
        check_environment(cell)
        check_cell_paths(cell)
        uri = tracking.tracking_uri(cell.tracking.uri)
        skipped = _skip_finished(cell, uri, label, index, name)
        if skipped is not None:
            return skipped
        check_space(cell, uri)
        if sweep is None:  # a sweep reconciles every orphan of its experiment before it starts (harness.sweep.sweeper)
            for run_id in tracking.reconcile_orphans(uri, cell.tracking.experiment, cell.key):
                print(f"[reconciled] {label}: run {run_id} of this cell was left RUNNING by a process that ended "
                      "(killed or crashed): marked KILLED")
    except HarnessError as err:
        print(f"[failed] {label}: {err}", file=sys.stderr)
        return Outcome(index, job_name(name, cell), "FAILED", error=str(err))

    try:
        with signals.handled(), cell_claim.claimed(cell, label) as waited:
            skipped = _skip_finished(cell, uri, label, index, name) if waited else None  # the other one finished it
            if skipped is not None:
                return skipped
            with claimed_device(select_device(cell.device)) as device:
                return _run(cell, device, uri, output_dir, label, index, sweep, name)
    except HarnessError as err:
        print(f"[failed] {label}: {err}", file=sys.stderr)
        return Outcome(index, job_name(name, cell), "FAILED", error=str(err))
    except KeyboardInterrupt as err:  # before the run existed (or while it was being closed)
        print(f"[killed] {label}: interrupted ({err}) before its run was open", file=sys.stderr)
        return Outcome(index, job_name(name, cell), "KILLED", error=f"interrupted ({str(err) or 'Ctrl-C'})",
                       preempted=isinstance(err, signals.Preempted))


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


def _skip_finished(cell: Cell, uri: str, label: str, index: int | None, name: str) -> Outcome | None:
    """SKIPPED if a finished run of the cell exists (unless force=true), with one line; else None."""
    if cell.force:
        return None
    done = tracking.finished_run(uri, cell.tracking.experiment, cell.key)
    if done is None:
        return None
    print(f"[skip] {label}: finished run {done.info.run_id} has the same settings (force=true reruns it)")
    return Outcome(index, job_name(name, cell), "SKIPPED", run_id=done.info.run_id)


def _preempted_run(cell: Cell, uri: str) -> str | None:
    """The id of the cell's newest run if its Slurm task was preempted (KILLED, tagged ``preempted``), else None."""
    found = tracking.newest_run(uri, cell.tracking.experiment, f"tags.{Tag.CELL_KEY} = '{cell.key}'")
    if found is None or found.info.status != "KILLED" or Tag.PREEMPTED not in found.data.tags:
        return None
    return found.info.run_id


def _run(cell: Cell, device, uri: str, output_dir: Path | None, label: str, index: int | None,
         sweep: SweepContext | None, name: str) -> Outcome:
    workers = sweep.workers if sweep else 1
    parent_run_id = sweep.parent_run_id if sweep else None
    threads = configure_threads(cell.threads, workers)
    tags = {
        Tag.KIND: "cell", Tag.CELL_KEY: cell.key, Tag.CELL_SERIES: cell.series_key, Tag.SWEEP_ID: sweep.id if sweep else None,
        Tag.DEVICE: str(device), Tag.DEVICE_NAME: device_name(device), Tag.THREADS: threads,
        Tag.CELL_DIR: relative(cell.images_dir),
        **{Tag.INPUTS_PREFIX + k: v for k, v in cell.inputs.items()},
        **tracking.source_tags(cell.description), **({Tag.REHEARSAL: "true"} if cell.rehearsal else {}),
        **{f"version.{k}": v for k, v in package_versions().items()},
    }

    tags[Tag.GIT_COMMIT] = git_commit()
    job = job_name(name, cell)
    try:
        if cell.part is None:
            preempted = _preempted_run(cell, uri) if tracking.slurm_job_id() else None
            if preempted is not None:  # resumed from its shards in the run its preempted task closed
                run, opened = tracking.Run.reopen(uri, preempted, tags), parts.REOPENED
            else:
                run, opened = tracking.Run.start(uri, cell.tracking.experiment, name, cell.params(), tags,
                                                 parent_run_id), parts.CREATED
        else:
            run, opened = parts.open_run(cell, uri, name, tags, parent_run_id)
            if opened == parts.FINISHED:
                print(f"[skip] {label}: its cell was finished by its parts (run {run.run_id})")
                return Outcome(index, job, "SKIPPED", run_id=run.run_id)
    except HarnessError as err:
        print(f"[failed] {label}: {err}", file=sys.stderr)
        return Outcome(index, job, "FAILED", error=str(err))
    ctx = JobContext(cell=cell, device=device, run=run, label=label, parallel=workers > 1, job=index)
    try:
        if opened == parts.CREATED:  # a new run; of a cell in parts, only the part that created it logs these
            run.log_dict(redacted(cell.config), "config.yaml")
            if output_dir is not None:
                for path in sorted((output_dir / ".hydra").glob("*.yaml")):
                    run.log_text(redact_file(path), f"hydra/{path.name}")
        cell.spec.run(ctx)
    except KeyboardInterrupt as err:
        how = f"interrupted ({str(err) or 'Ctrl-C'})"
        if cell.part is not None:
            parts.part_failed(cell, run, "killed", how)
        preempted = isinstance(err, signals.Preempted)
        why = ("the sweep submits the cell again, which resumes in this run" if preempted else
               "Ctrl-C or SIGTERM (a scheduler's time limit, docker stop, kill)")
        run.set_tags({Tag.ERROR: f"{how}: {why}"})
        run.end("KILLED")
        print(f"[{'preempted' if preempted else 'killed'}] {label}: {how} (run {run.run_id}, marked KILLED)",
              file=sys.stderr)
        return Outcome(index, job, "KILLED", error=how, run_id=run.run_id, preempted=preempted)
    except BaseException as err:  # noqa: BLE001 - the cell fails alone, with its message on its run
        known = out_of_memory(cell, device, err) or disk_full(err, cell, uri)  # one line for these, no traceback
        message = str(err) if isinstance(err, HarnessError) and not known else known or f"{type(err).__name__}: {err}"
        try:
            if cell.part is not None:
                parts.part_failed(cell, run, "failed", message)
            run.fail(HarnessError(known) if known else err)
        except Exception:  # a store on the full disk: the run stays RUNNING, reconciled by the cell's next run
            if not known:
                raise
        if not isinstance(err, HarnessError) and not known:
            log.exception("cell %s failed", job)
        print(f"[failed] {label}: {message} (run {run.run_id})", file=sys.stderr)
        return Outcome(index, job, "FAILED", error=message, run_id=run.run_id)
    if ctx.keep_open:
        print(f"[part done] {label}: {ctx.summary} (run {run.run_id})", flush=True)
        return Outcome(index, job, "FINISHED", summary=ctx.summary, run_id=run.run_id)
    run.end("FINISHED")
    print(f"[done] {label}: {ctx.summary} (run {run.run_id})", flush=True)
    return Outcome(index, job, "FINISHED", summary=ctx.summary, run_id=run.run_id,
                   headline=getattr(ctx, "headline", None))
