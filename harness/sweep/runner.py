"""One cell from start to end: skip it if already finished, run its job on a claimed device inside an MLflow run,
and report the outcome: one console line, and ``outcome.json`` in the job's folder for the sweep's summary.

A failing cell fails alone: its run is marked FAILED with the message, the other cells of a sweep go on, and the
sweep ends with a summary and a non-zero exit (harness.sweep.callbacks). Ctrl-C and SIGTERM (what SLURM time limits and
``docker stop`` send) mark the run KILLED.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from harness.core.config import settings
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
from harness.run.cell import Cell, check_environment, relative
from harness.run.jobs import JOBS
from harness.run.jobs.context import JobContext
from harness.sweep import cell_claim, signals
from harness.sweep.dryrun import print_plan
from harness.sweep.writable import check_cell_paths
from harness.tracking import store as tracking
from harness.tracking.credentials import redact, redact_file, redacted

log = logging.getLogger(__name__)
SWEEP_ENV = "DDIM_HARNESS_SWEEP"  # JSON {id, size, parent_run_id, workers} set by the sweep for its jobs
OUTCOME_FILE = "outcome.json"


@dataclass
class Outcome:
    index: int | None  # the job's number in the sweep (None for a single run)
    name: str
    status: str  # FINISHED | FAILED | KILLED | SKIPPED | PLANNED
    summary: str = ""
    error: str = ""
    run_id: str | None = None
    headline: str | None = None  # "fid 3.21 +- 0.40"

    def __post_init__(self) -> None:  # printed and logged by the sweep: names made of overrides may hold a store URI
        self.name, self.error = redact(self.name), redact(self.error)


def sweep_info() -> dict:
    try:
        return json.loads(os.environ.get(SWEEP_ENV, "{}"))
    except ValueError:
        return {}


def configure_console(verbose: bool) -> None:
    """Third-party chatter (MLflow, alembic, torch-fidelity) off unless verbose."""
    level = logging.INFO if verbose else logging.WARNING
    os.environ["MLFLOW_LOGGING_LEVEL"] = logging.getLevelName(level)  # read when mlflow is imported
    for name in ("mlflow", "alembic", "torch_fidelity", "urllib3"):
        logging.getLogger(name).setLevel(level)
    if verbose:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.INFO)


def run_job(cfg: DictConfig) -> dict:
    """The Hydra task: one cell. A single run exits non-zero on failure; in a sweep the failure is recorded and
    the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig  # lazy: Hydra's internals: only when a sweep or job runs
    from hydra.types import RunMode  # lazy: Hydra's internals: only when a sweep or job runs

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    info = sweep_info() if multirun else {}
    index = int(hc.job.num) if multirun else None
    output_dir = Path(hc.runtime.output_dir)
    configure_console(bool(cfg.get("verbose", False)))
    printed = False  # run_cell prints its own [failed]/[killed] line
    try:
        cell = Cell.from_config(cfg)
    except HarnessError as err:
        outcome = Outcome(index, " ".join(hc.overrides.task), "FAILED", error=str(err))
    else:
        printed = True
        name = sweep_run_name(cell, list(hc.overrides.task), info.get("varying") or []) if multirun else cell.run_name
        position = f"cell {index + 1}/{info['size']} " if multirun and info.get("size") else ""
        outcome = run_cell(cell, output_dir, label=position + job_name(name, cell), index=index, sweep=info,
                           name=name)
    if multirun:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / OUTCOME_FILE).write_text(json.dumps(asdict(outcome), indent=1))
    elif outcome.status in ("FAILED", "KILLED"):
        if not printed:
            print(f"error: {outcome.error}", file=sys.stderr)
        sys.exit((143 if "signal" in outcome.error else 130) if outcome.status == "KILLED" else 1 if outcome.run_id else 2)
    return asdict(outcome)


def _short(text: str, limit: int = 24) -> str:
    text = Path(text).name if "/" in text else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sweep_run_name(cell: Cell, overrides: list[str], varying: list[str]) -> str:
    """The run name of a sweep's cell: first the swept settings that the standard name (``S=.. eta=..``, sampler,
    dataset, job) does not show, e.g. ``seed=2 S=50 eta=0 digits/sample`` or ``path=b.pt S=3 eta=0 ...``, so the cells
    of one sweep never share a name in MLflow's list."""
    shown = {"S", "eta", "sampler", "nfe", "dataset", "job", "model", "part"}  # the parts of a cell share its run
    lead = []
    for key, value in settings(overrides).items():
        if key in varying and key not in shown:
            lead.append(f"{'.'.join(key.split('.')[-1:])}={_short(value)}")
    return " ".join(lead + [cell.run_name])


def job_name(name: str, cell: Cell) -> str:
    """A cell's run name and, for a part of it, which part: ``S=10 eta=0 digits/sample part 1 of 3 (images 5..9)``."""
    return f"{name} {cell.part_label}" if cell.part is not None else name


def run_cell(cell: Cell, output_dir: Path | None = None, *, label: str | None = None, index: int | None = None,
             sweep: dict | None = None, name: str | None = None) -> Outcome:
    name = name or cell.run_name
    label = label or job_name(name, cell)
    sweep = sweep or {}
    if cell.dry_run:
        print_plan([cell])
        return Outcome(index, job_name(name, cell), "PLANNED")
    try:
        check_environment(cell)
        check_cell_paths(cell)
        uri = tracking.tracking_uri(cell.tracking.uri)
        skipped = _skip_finished(cell, uri, label, index, name)
        if skipped is not None:
            return skipped
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
        return Outcome(index, job_name(name, cell), "KILLED", error=f"interrupted ({str(err) or 'Ctrl-C'})")


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


def _run(cell: Cell, device, uri: str, output_dir: Path | None, label: str, index: int | None, sweep: dict,
         name: str) -> Outcome:
    workers = int(sweep.get("workers") or 1)
    threads = configure_threads(cell.threads, workers)
    tags = {
        Tag.KIND: "cell", Tag.CELL_KEY: cell.key, Tag.CELL_SERIES: cell.series_key, Tag.SWEEP_ID: sweep.get("id"),
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
            run, opened = tracking.Run.start(uri, cell.tracking.experiment, name, cell.params(), tags,
                                             sweep.get("parent_run_id")), parts.CREATED
        else:
            run, opened = parts.open_run(cell, uri, name, tags, sweep.get("parent_run_id"))
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
        JOBS[cell.job](ctx)
    except KeyboardInterrupt as err:
        how = f"interrupted ({str(err) or 'Ctrl-C'})"
        if cell.part is not None:
            parts.part_failed(cell, run, "killed", how)
        run.set_tags({Tag.ERROR: f"{how}: Ctrl-C or SIGTERM (a scheduler's time limit, docker stop, kill)"})
        run.end("KILLED")
        print(f"[killed] {label}: {how} (run {run.run_id}, marked KILLED)", file=sys.stderr)
        return Outcome(index, job, "KILLED", error=how, run_id=run.run_id)
    except BaseException as err:  # noqa: BLE001 - the cell fails alone, with its message on its run
        oom = out_of_memory(cell, device, err)
        message = str(err) if isinstance(err, HarnessError) else oom or f"{type(err).__name__}: {err}"
        if cell.part is not None:
            parts.part_failed(cell, run, "failed", message)
        run.fail(HarnessError(oom) if oom else err)
        if not isinstance(err, HarnessError) and not oom:
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
