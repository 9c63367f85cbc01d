"""The harness's Hydra sweeper (``hydra/sweeper=cells``, the default): one path from the command line to the record.

1. Plan (harness.sweep.plan): the overrides parsed once into tasks (a cell in parts as its part tasks), each task's
   config composed and built into its ``Cell`` and named. Any bad input stops the sweep here with one message.
2. Check: each distinct device, checkpoint and data folder once (``check_environment``); ``dry_run=true`` prints the
   plan (harness.run.dryrun) and stops.
3. Open the parent run (harness.sweep.parent).
4. Launch: the launcher (``hydra/launcher``: local workers, submitit, Hydra's basic) gets the tasks' overrides, as
   Hydra's launcher API takes them, and a task, ``SweepTask``, that carries the sweep's facts and the built cells to
   the tasks. Each task returns its outcome; the launcher returns them all (one for a worker that died or a task the
   sweep never started, too).
5. Summarise the outcomes on the parent run and exit 0, 1 (a cell failed) or the stop signal's status.

Written against Hydra's public plugin API (``hydra.plugins.sweeper.Sweeper``, ``hydra.core.plugins.Plugins``,
``ConfigLoader.load_sweep_config``, the override parser); nothing of ``hydra._internal``.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from harness.core.cli import fail
from harness.core.console import configure_console
from harness.core.errors import HarnessError
from harness.run.preflight import check_environment
from harness.run import signals
from harness.sweep import plan
from harness.sweep.launcher import workers_of
from harness.run.outcome import Outcome
from harness.sweep.parent import ParentRun
from harness.sweep.slurm import SlurmLauncher
from harness.tracking.credentials import redact, redact_file


def _failed(task: plan.PlannedTask, error: str) -> dict:
    return asdict(Outcome(task.index, task.label, "FAILED", error=error))


def _outcome(task: plan.PlannedTask, ret: Any) -> dict:
    """A task's outcome from the launcher's return value (a JobReturn); one whose task function raised is FAILED."""
    if ret is None:
        return _failed(task, "the launcher returned nothing for this task")
    try:
        value = ret.return_value  # raises the task function's own exception
    except Exception as err:  # noqa: BLE001 - a failed task is an outcome, not the sweep's end
        return _failed(task, f"{type(err).__name__}: {err}")
    if not isinstance(value, dict):
        return _failed(task, f"the task returned {value!r}")
    return {**value, "name": redact(task.label)}  # the plan's name, a worker that died included


def cell_outcomes(planned: list[plan.PlannedTask], outcomes: list[dict]) -> list[dict]:
    """One outcome per cell: a cell in parts is one cell of the summary, FINISHED when its run is (the part that
    scored it), else its parts' worst state, with their errors."""
    merged: dict[str, dict] = {}
    rank = {"FAILED": 4, "KILLED": 3, "PLANNED": 2, "FINISHED": 1, "SKIPPED": 0}
    for task, outcome in zip(planned, outcomes):
        if task.cell.part is None:
            merged[f"{task.index}"] = outcome
            continue
        cell = merged.setdefault(task.name, {**outcome, "name": task.name, "error": "", "status": "SKIPPED"})
        cell["run_id"] = cell.get("run_id") or outcome.get("run_id")
        if outcome.get("headline"):  # the part that scored the cell: the cell is done
            cell.update(status="FINISHED", summary=outcome.get("summary", ""), headline=outcome["headline"])
        elif cell.get("headline") is None and rank.get(outcome["status"], 0) > rank.get(cell["status"], 0):
            cell["status"] = outcome["status"]
        if outcome.get("error"):
            cell["error"] = "; ".join(filter(None, [cell["error"], f"{task.cell.part_label}: {outcome['error']}"]))
    return list(merged.values())


class CellSweeper(Sweeper):
    """The cartesian product of the overrides (preset params first), a cell with ``parts=k`` as its k part tasks; each
    task's Cell built before any runs, and the outcomes summarised on the sweep's parent run."""

    def __init__(self, params: dict | None = None) -> None:
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config  # the launcher is made in sweep(), with the task

    def sweep(self, arguments: list[str]) -> list:
        from harness.run.runner import (  # lazy: brings torch, mlflow, torch_fidelity: Hydra loads this module at every start
            SweepContext,
            SweepTask,
        )

        config, context = self.config, self.hydra_context
        assert config is not None and context is not None
        configure_console(bool(config.get("verbose", False)))
        try:
            planned = plan.plan(config, context.config_loader, arguments, self.params)
            for task in planned:  # once per distinct environment: check_environment keeps the ones it found ready
                check_environment(task.cell)
            if config.get("dry_run"):
                from harness.report.pilot import PilotLines  # lazy: brings mlflow, pandas, scipy: only for a dry run
                from harness.run.dryrun import print_plan

                print_plan([j.cell for j in planned], PilotLines())
                return []
            sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            parent = ParentRun.open(config, planned, plan.sweep_name(planned), sweep_id)
        except HarnessError as err:
            fail(err)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        redact_file(sweep_dir / "multirun.yaml")  # it holds the command line: a store URI's credentials go
        slurm = str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher")
        workers = 1 if slurm else workers_of(config)  # a Slurm task has its allocation to itself
        task = SweepTask(SweepContext(sweep_id, len(planned), parent.run_id, workers), planned)
        n = len({j.name for j in planned})
        what = f"{n} cells" + (f" ({len(planned)} tasks: cells in parts)" if n != len(planned) else "")
        where = SlurmLauncher.describe(config, len(planned)) if slurm else f"on {workers} worker(s)"
        print(f"sweep {sweep_id}: {what}, {where}, parent run {parent.run_id}", flush=True)
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=task,
                                                                config=config)
        try:
            returns = list(self.launcher.launch([list(j.overrides) for j in planned], initial_job_idx=0))
        except Exception as err:  # noqa: BLE001 - e.g. submitit lost a task: the parent run says so and ends FAILED
            print(f"error: the launcher failed: {type(err).__name__}: {err}", file=sys.stderr)
            returns = []
            error = f"no outcome: the launcher failed ({type(err).__name__}: {err}); see the cell's run"
            outcomes = cell_outcomes(planned, [_failed(j, error) for j in planned])
        else:
            returns += [None] * (len(planned) - len(returns))
            outcomes = cell_outcomes(planned, [_outcome(task, ret) for task, ret in zip(planned, returns)])
        status = parent.close(outcomes, signals.received)
        if status:
            sys.exit(status)
        return [returns]

