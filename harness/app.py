"""The Hydra app behind ``python -m harness`` (and the ``ddim-harness`` command): one job per cell.

The configs are the package ``harness.conf`` (the repository's ``conf/``, shipped in the wheel), found through the
installed package rather than a search path over the working directory.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.core.config import HYDRA_CONFIG_PATH
from harness.core.cli import fail
from harness.core.console import configure_console
from harness.core.errors import HarnessError
from harness.core.overrides import unreadable_override
from harness.run import signals
from harness.run.cell import Cell, task_name
from harness.run.outcome import Outcome


def task(cfg: DictConfig) -> dict:
    """The Hydra job of a run without the cell sweeper (a sweep's jobs run its ``SweepTask``): its cell built, planned
    (``dry_run=true``) or run (harness.run.runner). A single run exits non-zero when its cell fails."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    index = int(hc.job.num) if multirun else None
    configure_console(bool(cfg.get("verbose", False)))
    try:
        cell = Cell.from_config(cfg)
    except HarnessError as err:
        if multirun:
            return asdict(Outcome(index, " ".join(hc.overrides.task), "FAILED", error=str(err)))
        fail(err)
    if cell.dry_run:  # only a dry run imports the report, for its planner line
        from harness.report.pilot import PilotLines
        from harness.run.dryrun import print_plan

        print_plan([cell], PilotLines())
        return asdict(Outcome(index, task_name(cell.run_name, cell), "PLANNED"))
    from harness.run.runner import run_cell  # lazy: torch, mlflow: python -m harness --help stays fast

    outcome = run_cell(cell, Path(hc.runtime.output_dir), index=index)
    if not multirun and outcome.status in ("FAILED", "KILLED"):
        sys.exit((143 if "signal" in outcome.error else 130) if outcome.status == "KILLED" else 1 if outcome.run_id else 2)
    return asdict(outcome)


hydra_main = hydra.main(version_base="1.3", config_path=HYDRA_CONFIG_PATH, config_name="config")(task)


def main() -> None:
    """``hydra_main`` with Ctrl-C and SIGTERM as clean stops (harness.run.signals): one that stops the command outside a
    cell (while Hydra starts, while a sweep starts or ends) is one line and exit status 130 or 143, never a
    traceback; a sweep's parent run still open is marked KILLED."""
    problem = unreadable_override(sys.argv[1:])
    if problem:
        fail(problem)
    signals.install()
    try:
        hydra_main()
    except KeyboardInterrupt as err:
        signum = signals.signal_of(err)  # later signals are ignored (harness.run.signals): this cleanup is not cut short
        from harness.sweep.parent import end_open_parent  # a sweep's parent run, if this process opened one
        run_id = end_open_parent("KILLED")
        marked = f"; parent run {run_id} marked KILLED" if run_id else ""
        print(f"stopped ({signals.name(signum)}){marked}", file=sys.stderr, flush=True)
        sys.exit(signals.exit_status(signum))
    finally:
        signals.stop_raising()  # the process is ending: a signal now must not break off its atexit handlers
