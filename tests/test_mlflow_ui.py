"""The MLflow view of a sweep, in a real browser: a tiny sweep into a SQLite store, a real ``mlflow server`` on
127.0.0.1 over that store, and Debian's headless Chromium reading the rendered pages (the MLflow UI is a React app:
each check waits for the text to render). Screenshots go to the test's tmp folder.

Checked: the link the sweep prints opens the runs table (not GenAI traces) in the harness's saved view, with the
headline metric as a column and run names uncut; the parent run groups the cells; a cell's page shows its
description, reference dataset, source (entry point and commit) and metrics; the parent holds the summary table
and the metric-vs-S figure."""

from __future__ import annotations

import re

import mlflow
import pytest

from browser import Chromium
from clitools import harness
from mlflow_server import free_port, start_server, stop_server


def uncut(name: str) -> str:
    """JavaScript: true when an element showing exactly ``name`` is rendered without clipping (no ellipsis)."""
    return ("[...document.querySelectorAll('a, span, div')].some(e => e.children.length === 0 && "
            f"e.textContent.trim() === {name!r} && e.offsetWidth > 0 && e.scrollWidth <= e.clientWidth)")


@pytest.mark.slow
def test_sweep_in_the_mlflow_ui(tmp_path):
    proc = harness(tmp_path, "-m", "S=3,4", "N=8", "repeats=1", "batch_size=8", "job.grid_images=8",
                   "hydra.launcher.n_jobs=2")
    link = re.search(r"then open http://127\.0\.0\.1:5000/(#/experiments/\S+)", proc.stdout).group(1)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name == "ddim-harness"]
    found = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    parent, cell = found["sweep S=3,4 (2 cells)"], found["S=3 eta=0 digits/sample"]
    fid = cell.data.metrics["fid"]

    port = free_port()
    server = start_server(tmp_path, port)
    base = f"http://127.0.0.1:{port}/"
    try:
        with Chromium(tmp_path / "profile", width=2000, height=1100) as page:
            # The printed link: the runs table in the harness's saved view, not the GenAI overview.
            page.open(base + link)
            text = page.wait_for_text("sweep S=3,4 (2 cells)", "DDIM cells: fid by S and eta", timeout=120)
            assert "Run Name" in text and "matching runs" in text and "Token Usage" not in text  # not the GenAI overview
            headers = page.evaluate("[...document.querySelectorAll('[col-id]')].map(e => e.getAttribute('col-id'))")
            assert {"metrics.`fid`", "metrics.`kid`", "params.`S`", "params.`eta`", "attributes.`Dataset`"} <= set(headers)
            assert page.evaluate(uncut("sweep S=3,4 (2 cells)")), "the parent's name is cut"
            # The parent groups the cells: expand it, the cells' rows appear with their fid.
            page.evaluate("document.querySelector('.ag-row button[data-component-id*=runnamecellrenderer]').click()")
            text = page.wait_for_text("S=3 eta=0 digits/sample", "S=4 eta=0 digits/sample", timeout=60)
            assert page.evaluate(uncut("S=3 eta=0 digits/sample")), "a cell's name is cut"
            assert str(fid)[:6] in text and "digits-train" in text
            page.screenshot(tmp_path / "runs.png")

            # A cell's page: description, reference dataset, source (entry point + commit), parent and metrics.
            page.open(f"{base}#/experiments/{exp.experiment_id}/runs/{cell.info.run_id}?workflowType=machine_learning")
            commit = cell.data.tags["mlflow.source.git.commit"][:7]
            text = page.wait_for_text("Description", "Datasets", "Source", "sweep S=3,4 (2 cells)", timeout=120)
            assert cell.data.tags["mlflow.note.content"] in text
            assert "digits: 1 x 8 images scored; ddim (eta=0), S=3" in text
            assert re.search(r"Datasets\s+digits-train \(digits-train-[0-9a-f]+\)\s+Reference", text)
            assert re.search(rf"Source\s+python -m harness\s+{commit}", text)
            assert re.search(r"Parent run\s+sweep S=3,4 \(2 cells\)", text)
            assert re.search(rf"\nfid\s+{re.escape(str(fid)[:6])}", text) and "fid_seconds" in text
            page.screenshot(tmp_path / "run.png")

            # The parent's artifacts: the sweep's summary table and the metric-vs-S figure.
            page.open(f"{base}#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}/artifacts"
                      "?workflowType=machine_learning")
            page.wait_for_text("metric_vs_S.png", "sweep_summary.csv", "sweep_summary.md", timeout=120)
            page.screenshot(tmp_path / "parent_artifacts.png")
    finally:
        stop_server(server)
    for shot in ("runs.png", "run.png", "parent_artifacts.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
