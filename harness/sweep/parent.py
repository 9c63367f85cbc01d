"""A sweep's parent run in MLflow, the cells' runs its children: opened before any cell (the store prepared, runs of
dead processes marked KILLED), and at the end given the outcomes' summary (a table, a metric-vs-S figure) and ended
FINISHED, FAILED or KILLED."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from omegaconf import DictConfig

from harness.core.names import Param, Tag, repeat_stat
from harness.run import signals
from harness.sweep.plan import PlannedTask
from harness.tracking import store as tracking
from harness.tracking.credentials import redact
from harness.tracking.store import store_of

_open_parent: list[str] = []  # [store URI, run id] of this process's sweep while its parent run is open


def end_open_parent(status: str) -> str | None:
    """End the parent run of a sweep that stops before its summary (Ctrl-C or SIGTERM while the sweep starts or
    ends); return its id, or None when there is none or it could not be ended (the next sweep marks it KILLED)."""
    if not _open_parent:
        return None
    uri, run_id = _open_parent
    _open_parent.clear()
    try:
        tracking.Run(uri, run_id).end(status)
    except Exception:  # noqa: BLE001 - the next sweep marks it KILLED (its process is gone by then)
        return None
    return run_id


class ParentRun:
    """The sweep's parent run in MLflow: opened before any cell (with the tags that group its cells), given the
    summary of the outcomes at the end, and ended FINISHED, FAILED (a cell failed) or KILLED (the sweep was stopped)."""

    def __init__(self, uri: str, experiment_id: str, run_id: str) -> None:
        self.uri, self.experiment_id, self.run_id = uri, experiment_id, run_id
        self.started = time.perf_counter()

    @classmethod
    def open(cls, config: DictConfig, planned: list[PlannedTask], jobs_name: str, sweep_id: str) -> "ParentRun":
        """Prepare the store, mark the runs of dead processes KILLED, and start the parent run; HarnessError on a bad
        store."""
        cells = [p.cell for p in planned]
        uri, experiment = store_of(config)
        experiment_id = tracking.prepare_store(uri, experiment)
        orphans = tracking.reconcile_orphans(uri, experiment)
        if orphans:
            print(f"note: {len(orphans)} run(s) left RUNNING by processes that no longer exist were marked KILLED")
        names = sorted({c.dataset["name"] for c in cells}), sorted({c.job for c in cells})
        description = redact(f"Sweep of {len(cells)} cells ({', '.join(names[0])}; {', '.join(names[1])}): "
                             + "python -m harness " + " ".join(config.hydra.overrides.task))
        run = tracking.Run.start(
            uri, experiment, jobs_name, {"cells": len(cells)},
            {Tag.KIND: "sweep", Tag.SWEEP_ID: sweep_id, "dataset": ",".join(names[0]), "job": ",".join(names[1]),
             **({Tag.REHEARSAL: "true"} if any(c.rehearsal for c in cells) else {}),
             **tracking.source_tags(description)})
        _open_parent[:] = [uri, run.run_id]
        return cls(uri, experiment_id, run.run_id)

    def close(self, outcomes: list[dict], stop: int | None) -> int:
        """The summary: one line, the failed cells and why, the table and figure on the parent run, which is ended.
        Returns the exit status: 0, 1 (a cell failed), or the stop signal's (130, 143)."""
        failed = [o for o in outcomes if o["status"] in ("FAILED", "KILLED")]
        counts = {s: sum(o["status"] == s for o in outcomes) for s in ("FINISHED", "SKIPPED", "FAILED", "KILLED")}
        minutes = (time.perf_counter() - self.started) / 60
        if stop:
            return self._end_stopped(outcomes, counts, minutes, stop)
        print(f"sweep done in {minutes:.1f} min: {len(outcomes)} cells, {counts['FINISHED']} finished, "
              f"{counts['SKIPPED']} skipped (already finished), {len(failed)} failed", flush=True)
        if failed:
            print(f"{len(failed)} of {len(outcomes)} cells failed:", flush=True)
        for o in failed:
            print(f"  {o['status'].lower()}: {o['name']}: {o['error']}", flush=True)
        print(f"runs: {tracking.view_link(self.uri, self.experiment_id)}", flush=True)
        try:
            parent = tracking.Run(self.uri, self.run_id)
            _log_summary(parent, outcomes)
            parent.end("FAILED" if failed else "FINISHED")
            _open_parent.clear()
        except Exception as err:  # noqa: BLE001 - the cells' runs are what matter; say so and go on
            print(f"warning: could not write the sweep summary to the parent run: {err}", file=sys.stderr)
        return 1 if failed else 0

    def _end_stopped(self, outcomes: list[dict], counts: dict[str, int], minutes: float, stop: int) -> int:
        """A sweep stopped by Ctrl-C or SIGTERM: its summary on the parent run (no figure: a scheduler's grace time
        is short), the parent run KILLED, one line, and the exit status of the signal (130, 143)."""
        try:
            parent = tracking.Run(self.uri, self.run_id)
            _log_summary(parent, outcomes, figure=False)
            parent.end("KILLED")
            _open_parent.clear()
            marked = f"parent run {self.run_id} marked KILLED"
        except Exception as err:  # noqa: BLE001 - the next sweep marks it KILLED (its process is gone by then)
            marked = f"parent run {self.run_id} not marked ({err})"
        print(f"sweep stopped ({signals.name(stop)}) after {minutes:.1f} min: {len(outcomes)} cells, "
              f"{counts['FINISHED']} finished, {counts['SKIPPED']} skipped, {counts['KILLED'] + counts['FAILED']} "
              f"killed or not started; {marked}", file=sys.stderr, flush=True)
        return signals.exit_status(stop)


def _log_summary(parent, outcomes: list[dict], figure: bool = True) -> None:
    import pandas as pd  # lazy, as matplotlib below: only the summary needs them

    table = pd.DataFrame(outcomes, columns=["index", "name", "status", "headline", "summary", "error", "run_id"])
    parent.log_text(table.to_csv(index=False), "sweep_summary.csv")
    parent.log_text(table.drop(columns=["summary"]).to_markdown(index=False), "sweep_summary.md")
    figure = _headline_figure(parent.uri, [o["run_id"] for o in outcomes if o.get("run_id")]) if figure else None
    if figure is not None:
        parent.log_artifact(figure)
        figure.unlink()


def _headline_figure(uri: str, run_ids: list[str]) -> Path | None:
    """The headline metric against S, one line per (sampler, eta), with the 95% CI when the cells have repeats."""
    c = tracking.client(uri)
    rows = []
    for run_id in dict.fromkeys(run_ids):  # the parts of a cell share its run
        run = c.get_run(run_id)
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        metric = t.get(Tag.HEADLINE_METRIC)  # a scored job's tag
        if metric not in m:
            continue
        rows.append({"line": f"{p.get(Param.SAMPLER, 'ddim')} eta={p.get(Param.ETA)}", "S": int(p[Param.S]),
                     "value": m[metric], "low": m.get(repeat_stat(metric, "ci95_low")), "metric": metric})
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
