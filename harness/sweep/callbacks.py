"""A multirun as a whole: checked before any cell runs, grouped under one MLflow parent run, summarised at the end.

Before launching (``on_multirun_start``), every cell is composed and built as a ``Cell`` (so any bad input, an eta
too large for its tau, a missing device, a bad name, stops the sweep with one message before any work), a dry run
prints the plan, runs orphaned by dead processes are marked, and the parent run is created. At the end
(``on_multirun_end``) the outcomes the jobs wrote are summarised (k of n cells failed, which and why), the summary
table and a metric-vs-S figure go to the parent run, and the command exits non-zero if any cell failed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.core.config import settings
from harness.core.errors import HarnessError
from harness.core.names import Param, Tag, repeat_stat
from harness.sweep import signals
from harness.tracking import store as tracking
from harness.tracking.credentials import redact
from harness.tracking.store import store_of


def sweep_overrides(config: DictConfig) -> list[list[str]]:
    """The override list of every job, as the sweeper builds them (preset params, then the command line; a cell in
    parts as its part jobs)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # lazy: Hydra's internals: only when a sweep or job runs
    from hydra.core.override_parser.overrides_parser import OverridesParser  # lazy: Hydra's internals: only when a sweep or job runs

    from harness.run.parts import (
        expand_parts,  # lazy: brings torch, mlflow, torch_fidelity, scipy: Hydra loads this module at every start, --help too
    )

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return expand_parts(BasicSweeper.split_arguments(overrides, None)[0], config.get("parts", 1), config.get("part"))


def swept_values(jobs: list[list[str]]) -> dict[str, list[str]]:
    """{override key: its values in order} for the keys whose value differs between the jobs of a sweep."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for key, value in settings(job).items():
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return {k: v for k, v in values.items() if len(v) > 1}


def sweep_name(jobs: list[list[str]]) -> str:
    """The parent run's name: what the sweep varies, e.g. ``sweep S=10,20 eta=0,1 (4 cells)``."""
    from harness.sweep.runner import (
        _short,  # lazy: brings torch, torchvision, mlflow, pandas, matplotlib, torch_fidelity, scipy: Hydra loads this module at every start, --help too
    )

    swept = " ".join(f"{k.split('.')[-1]}={','.join(_short(v, 16) for v in vs)}" for k, vs in swept_values(jobs).items())
    swept = swept if len(swept) <= 90 else swept[:87] + "..."
    return f"sweep {swept} ({len(jobs)} cells)" if swept else f"sweep ({len(jobs)} cells)"


def compose_cells(config: DictConfig):
    """The Cell of every job of the sweep; needs Hydra initialised (inside the app)."""
    from hydra import compose  # lazy: Hydra's internals: only when a sweep or job runs

    from harness.run.cell import (
        Cell,  # lazy: brings torch, torch_fidelity, scipy: Hydra loads this module at every start, --help too
    )

    cells = []
    for overrides in sweep_overrides(config):
        try:
            cells.append(Cell.from_config(compose(config_name="config", overrides=overrides)))
        except HarnessError as err:
            raise HarnessError(f"cell {' '.join(overrides)}: {err}") from None
    return cells


_open_parent: list[str] = []  # [store URI, run id] of this process's sweep while its parent run is open


def end_open_parent(status: str) -> str | None:
    """End the parent run of a sweep that stops before its summary (Ctrl-C or SIGTERM while the sweep starts or
    ends); return its id, or None when there is none or it could not be ended (the next sweep marks it KILLED)."""
    if not _open_parent:
        return None
    uri, run_id = _open_parent
    _open_parent.clear()
    try:
        from harness.tracking.store import (
            Run,  # lazy: brings torch, mlflow: Hydra loads this module at every start, --help too
        )

        Run(uri, run_id).end(status)
    except Exception:  # noqa: BLE001 - the next sweep marks it KILLED (its process is gone by then)
        return None
    return run_id


class SweepCallbacks(Callback):
    def __init__(self) -> None:
        self.parent: tuple[str, str] | None = None  # (store URI, run id): plain strings, so the callbacks pickle
        self.experiment_id = ""
        self.size = 0
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **_: Any) -> None:
        from harness.run.cell import (
            check_environment,  # lazy: brings torch, torch_fidelity, scipy: Hydra loads this module at every start, --help too
        )
        from harness.sweep.launcher import (
            workers_of,  # lazy: brings torch, torchvision, mlflow, pandas, matplotlib, torch_fidelity, scipy: Hydra loads this module at every start, --help too
        )
        from harness.sweep.runner import (  # lazy: brings torch, torchvision, mlflow, pandas, matplotlib, torch_fidelity, scipy: Hydra loads this module at every start, --help too
            SWEEP_ENV,
            configure_console,
        )

        configure_console(bool(config.get("verbose", False)))
        try:
            cells = compose_cells(config)
            for cell in {(c.device, c.job, c.dataset.get("name"), c.dataset.get("root")): c for c in cells}.values():
                check_environment(cell)
            if config.get("dry_run"):
                from harness.sweep.dryrun import (
                    print_plan,  # lazy: brings torch, mlflow, pandas, torch_fidelity, scipy: Hydra loads this module at every start, --help too
                )

                print_plan(cells)
                sys.exit(0)
            uri, experiment = store_of(config)
            self.experiment_id = tracking.prepare_store(uri, experiment)
            orphans = tracking.reconcile_orphans(uri, experiment)
            if orphans:
                print(f"note: {len(orphans)} run(s) left RUNNING by processes that no longer exist were marked KILLED")
            sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            jobs = sweep_overrides(config)
            names = sorted({c.dataset["name"] for c in cells}), sorted({c.job for c in cells})
            description = redact(f"Sweep of {len(cells)} cells ({', '.join(names[0])}; {', '.join(names[1])}): "
                                 + "python -m harness " + " ".join(config.hydra.overrides.task))
            parent = tracking.Run.start(
                uri, experiment, sweep_name(jobs), {"cells": len(cells)},
                {Tag.KIND: "sweep", Tag.SWEEP_ID: sweep_id, "dataset": ",".join(names[0]), "job": ",".join(names[1]),
                 **({Tag.REHEARSAL: "true"} if any(c.rehearsal for c in cells) else {}),
                 **tracking.source_tags(description)})
            self.parent = (uri, parent.run_id)
            _open_parent[:] = self.parent
        except HarnessError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        self.started, self.size = time.perf_counter(), len(cells)
        os.environ[SWEEP_ENV] = json.dumps({"id": sweep_id, "size": len(cells), "parent_run_id": self.parent[1],
                                            "workers": workers_of(config), "varying": sorted(swept_values(jobs))})
        print(f"sweep {sweep_id}: {len(cells)} cells on {workers_of(config)} worker(s), parent run {self.parent[1]}",
              flush=True)

    def on_multirun_end(self, config: DictConfig, **_: Any) -> None:
        from harness.sweep.runner import (
            OUTCOME_FILE,  # lazy: brings torch, torchvision, mlflow, pandas, matplotlib, torch_fidelity, scipy: Hydra loads this module at every start, --help too
        )

        if self.parent is None:
            return
        stop = signals.received  # Ctrl-C or SIGTERM stopped the sweep (harness.sweep.launcher)
        outcomes = []
        for path in sorted(Path(str(config.hydra.sweep.dir)).glob(f"*/{OUTCOME_FILE}"), key=lambda p: int(p.parent.name)
                           if p.parent.name.isdigit() else 0):
            outcomes.append(json.loads(path.read_text()))
        seen = {o.get("index") for o in outcomes}
        missing = ({"status": "KILLED", "error": f"not started: the sweep was stopped ({signals.name(stop)})"} if stop
                   else {"status": "FAILED", "error": "no outcome was written (the job ended before the runner could report)"})
        outcomes += [{"index": i, "name": f"cell {i + 1}", "headline": None, "summary": "", "run_id": None, **missing}
                     for i in range(self.size) if i not in seen]
        failed = [o for o in outcomes if o["status"] in ("FAILED", "KILLED")]
        counts = {s: sum(o["status"] == s for o in outcomes) for s in ("FINISHED", "SKIPPED", "FAILED", "KILLED")}
        minutes = (time.perf_counter() - self.started) / 60
        if stop:
            self._end_stopped(outcomes, counts, minutes, stop)
        line = (f"sweep done in {minutes:.1f} min: {len(outcomes)} cells, {counts['FINISHED']} finished, "
                f"{counts['SKIPPED']} skipped (already finished), {len(failed)} failed")
        print(line, flush=True)
        if failed:
            print(f"{len(failed)} of {len(outcomes)} cells failed:", flush=True)
        for o in failed:
            print(f"  {o['status'].lower()}: {o['name']}: {o['error']}", flush=True)
        from harness.tracking.store import (
            view_link,  # lazy: brings torch, mlflow: Hydra loads this module at every start, --help too
        )

        print(f"runs: {view_link(self.parent[0], self.experiment_id)}", flush=True)
        try:
            from harness.tracking.store import (
                Run,  # lazy: brings torch, mlflow: Hydra loads this module at every start, --help too
            )

            parent = Run(*self.parent)
            self._log_summary(parent, outcomes)
            parent.end("FAILED" if failed else "FINISHED")
            _open_parent.clear()
        except Exception as err:  # noqa: BLE001 - the cells' runs are what matter; say so and go on
            print(f"warning: could not write the sweep summary to the parent run: {err}", file=sys.stderr)
        if failed:
            sys.exit(1)

    def _end_stopped(self, outcomes: list[dict], counts: dict[str, int], minutes: float, stop: int) -> None:
        """A sweep stopped by Ctrl-C or SIGTERM: its summary on the parent run (no figure: a scheduler's grace time
        is short), the parent run KILLED, one line, and the exit status of the signal (130, 143)."""
        from harness.tracking.store import (
            Run,  # lazy: brings torch, mlflow: Hydra loads this module at every start, --help too
        )

        try:
            parent = Run(*self.parent)
            self._log_summary(parent, outcomes, figure=False)
            parent.end("KILLED")
            _open_parent.clear()
            marked = f"parent run {self.parent[1]} marked KILLED"
        except Exception as err:  # noqa: BLE001 - the next sweep marks it KILLED (its process is gone by then)
            marked = f"parent run {self.parent[1]} not marked ({err})"
        print(f"sweep stopped ({signals.name(stop)}) after {minutes:.1f} min: {len(outcomes)} cells, "
              f"{counts['FINISHED']} finished, {counts['SKIPPED']} skipped, {counts['KILLED'] + counts['FAILED']} "
              f"killed or not started; {marked}", file=sys.stderr, flush=True)
        sys.exit(signals.exit_status(stop))

    @staticmethod
    def _log_summary(parent, outcomes: list[dict], figure: bool = True) -> None:
        import pandas as pd  # lazy: pandas: only for the summary table

        table = pd.DataFrame(outcomes, columns=["index", "name", "status", "headline", "summary", "error", "run_id"])
        parent.log_text(table.to_csv(index=False), "sweep_summary.csv")
        parent.log_text(table.drop(columns=["summary"]).to_markdown(index=False), "sweep_summary.md")
        figure = _headline_figure(parent.uri, [o["run_id"] for o in outcomes if o.get("run_id")]) if figure else None
        if figure is not None:
            parent.log_artifact(figure)
            figure.unlink()


def _headline_figure(uri: str, run_ids: list[str]) -> Path | None:
    """The headline metric against S, one line per (sampler, eta), with the 95% CI when the cells have repeats."""
    from harness.tracking.store import (
        client,  # lazy: brings torch, mlflow: Hydra loads this module at every start, --help too
    )

    c = client(uri)
    rows = []
    for run_id in dict.fromkeys(run_ids):  # the parts of a cell share its run
        run = c.get_run(run_id)
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        metric = t.get(Tag.HEADLINE_METRIC)
        if p.get(Param.JOB) != "sample" or metric not in m:
            continue
        rows.append({"line": f"{p.get(Param.SAMPLER, 'ddim')} eta={p.get(Param.ETA)}", "S": int(p[Param.S]),
                     "value": m[metric], "low": m.get(repeat_stat(metric, "ci95_low")), "metric": metric})
    if not rows:
        return None
    import matplotlib  # lazy: matplotlib: only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib: only when a figure is drawn

    fig, ax = plt.subplots(figsize=(6, 4))
    for line in sorted({r["line"] for r in rows}):
        pts = sorted((r["S"], r["value"], r["low"]) for r in rows if r["line"] == line)
        err = [v - lo if lo is not None else 0.0 for _, v, lo in pts]
        ax.errorbar([s for s, _, _ in pts], [v for _, v, _ in pts], yerr=err, marker="o", capsize=3, label=line)
    ax.set_xscale("log")
    ax.set_xlabel("S (steps)")
    ax.set_ylabel(rows[0]["metric"] + " (95% CI over repeats)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path = Path(tempfile.mkdtemp()) / "metric_vs_S.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
