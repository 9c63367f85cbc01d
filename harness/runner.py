"""One cell from start to end: skip it if already finished, run its job on a claimed device inside an MLflow run,
and report the outcome: one console line, and ``outcome.json`` in the job's folder for the sweep's summary.

A failing cell fails alone: its run is marked FAILED with the message, the other cells of a sweep go on, and the
sweep ends with a summary and a non-zero exit (harness.sweep). Ctrl-C and SIGTERM (what SLURM time limits and
``docker stop`` send) mark the run KILLED.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from . import tracking
from .cell import Cell, check_environment, relative
from .errors import HarnessError
from .names import Tag

log = logging.getLogger(__name__)
SWEEP_ENV = "DDIM_HARNESS_SWEEP"  # JSON {id, size, parent_run_id, workers} set by the sweep for its jobs
OUTCOME_FILE = "outcome.json"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked KILLED."""


@dataclass
class Outcome:
    index: int | None  # the job's number in the sweep (None for a single run)
    name: str
    status: str  # FINISHED | FAILED | KILLED | SKIPPED | PLANNED
    summary: str = ""
    error: str = ""
    run_id: str | None = None
    headline: str | None = None  # "fid 3.21 +- 0.40"


def sweep_info() -> dict:
    try:
        return json.loads(os.environ.get(SWEEP_ENV, "{}"))
    except ValueError:
        return {}


@contextmanager
def sigterm_as_interrupt():
    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    info = sweep_info() if multirun else {}
    index = int(hc.job.num) if multirun else None
    output_dir = Path(hc.runtime.output_dir)
    configure_console(bool(cfg.get("verbose", False)))
    try:
        cell = Cell.from_config(cfg)
    except HarnessError as err:
        outcome = Outcome(index, " ".join(hc.overrides.task), "FAILED", error=str(err))
    else:
        position = f"cell {index + 1}/{info['size']} " if multirun and info.get("size") else ""
        outcome = run_cell(cell, output_dir, label=position + cell.run_name, index=index, sweep=info)
    if multirun:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / OUTCOME_FILE).write_text(json.dumps(asdict(outcome), indent=1))
    elif outcome.status in ("FAILED", "KILLED"):
        print(f"error: {outcome.error}", file=sys.stderr)
        sys.exit(130 if outcome.status == "KILLED" else 1 if outcome.run_id else 2)
    return asdict(outcome)


def run_cell(cell: Cell, output_dir: Path | None = None, *, label: str | None = None, index: int | None = None,
             sweep: dict | None = None) -> Outcome:
    label = label or cell.run_name
    sweep = sweep or {}
    if cell.dry_run:
        from .dryrun import print_plan

        print_plan([cell])
        return Outcome(index, cell.run_name, "PLANNED")
    try:
        check_environment(cell)
        uri = tracking.tracking_uri(cell.tracking.uri)
        if not cell.force:
            done = tracking.finished_run(uri, cell.tracking.experiment, cell.key)
            if done is not None:
                print(f"[skip] {label}: finished run {done.info.run_id} has the same settings (force=true reruns it)")
                return Outcome(index, cell.run_name, "SKIPPED", run_id=done.info.run_id)
    except HarnessError as err:
        print(f"[failed] {label}: {err}", file=sys.stderr)
        return Outcome(index, cell.run_name, "FAILED", error=str(err))
    from .runtime import claimed_device, select_device

    with sigterm_as_interrupt(), claimed_device(select_device(cell.device)) as device:
        return _run(cell, device, uri, output_dir, label, index, sweep)


def _run(cell: Cell, device, uri: str, output_dir: Path | None, label: str, index: int | None, sweep: dict) -> Outcome:
    from .jobs import JOBS
    from .jobs.context import JobContext
    from .runtime import configure_threads, device_name, package_versions

    workers = int(sweep.get("workers") or 1)
    threads = configure_threads(cell.threads, workers)
    tags = {
        Tag.KIND: "cell", Tag.CELL_KEY: cell.key, Tag.SWEEP_ID: sweep.get("id"), Tag.DEVICE: str(device),
        Tag.DEVICE_NAME: device_name(device), Tag.THREADS: threads, Tag.CELL_DIR: relative(cell.images_dir),
        **tracking.source_tags(cell.description),
        **{f"version.{k}": v for k, v in package_versions().items()},
    }
    from .runtime import git_commit

    tags[Tag.GIT_COMMIT] = git_commit()
    try:
        run = tracking.Run.start(uri, cell.tracking.experiment, cell.run_name, cell.params(), tags, sweep.get("parent_run_id"))
    except HarnessError as err:
        print(f"[failed] {label}: {err}", file=sys.stderr)
        return Outcome(index, cell.run_name, "FAILED", error=str(err))
    ctx = JobContext(cell=cell, device=device, run=run, label=label, parallel=workers > 1)
    try:
        run.log_dict(dict(cell.config), "config.yaml")
        if output_dir is not None:
            for path in sorted((output_dir / ".hydra").glob("*.yaml")):
                run.log_artifact(path, "hydra")
        JOBS[cell.job](ctx)
    except KeyboardInterrupt as err:
        run.set_tags({Tag.ERROR: "interrupted (Ctrl-C or SIGTERM)"})
        run.end("KILLED")
        print(f"[killed] {label} (run {run.run_id})", file=sys.stderr)
        return Outcome(index, cell.run_name, "KILLED", error=f"interrupted ({err or 'Ctrl-C'})", run_id=run.run_id)
    except BaseException as err:  # noqa: BLE001 - the cell fails alone, with its message on its run
        run.fail(err)
        message = str(err) if isinstance(err, HarnessError) else f"{type(err).__name__}: {err}"
        if not isinstance(err, HarnessError):
            log.exception("cell %s failed", cell.run_name)
        print(f"[failed] {label}: {message} (run {run.run_id})", file=sys.stderr)
        return Outcome(index, cell.run_name, "FAILED", error=message, run_id=run.run_id)
    run.end("FINISHED")
    print(f"[done] {label}: {ctx.summary} (run {run.run_id})", flush=True)
    return Outcome(index, cell.run_name, "FINISHED", summary=ctx.summary, run_id=run.run_id,
                   headline=getattr(ctx, "headline", None))
