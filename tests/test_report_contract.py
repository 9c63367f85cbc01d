"""The contract between the runner and the report: a real tiny multirun through the command line, into a temporary
store, and the report built from that store shows every cell it ran (and no other), with the values the runs logged.

If a param, tag or metric name in harness/core/names.py changes on one side only, this fails instead of leaving a
report table silently empty."""

from __future__ import annotations

import pytest
import pandas as pd
from clitools import harness, runs

from harness.report.build import Options, build_report

GRID = {"eta": ["0", "1"], "S": [3, 4]}


@pytest.mark.slow
def test_every_cell_of_a_real_multirun_is_in_table_1(tmp_path):
    harness(tmp_path, "-m", f"eta={','.join(GRID['eta'])}", f"S={','.join(map(str, GRID['S']))}", "N=16",
            "repeats=2", "batch_size=16", "hydra.launcher.n_jobs=1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = runs(tmp_path).query("`tags.kind` == 'cell'")
    assert len(logged) == 4 and set(logged["status"]) == {"FINISHED"}

    report = build_report(Options(uri, tmp_path / "report"))
    block = next(b for b in report.tables[0].blocks if b.dataset == "digits" and not b.paper_only)
    shown = block.measured["value"]
    assert sorted(shown.index) == sorted((e, s) for e in GRID["eta"] for s in GRID["S"])  # every cell, none invented
    expected = {(r["params.eta"], int(r["params.S"])): r["metrics.fid"] for _, r in logged.iterrows()}
    assert shown.to_dict() == expected
    assert set(block.measured["run_id"]) == set(logged["run_id"])
    wide = pd.read_csv(tmp_path / "report" / "table1.csv", dtype=str, keep_default_na=False)
    digits = wide[wide["block"].str.startswith("digits 8x8: measured")].set_index("eta")
    assert digits.loc["eta=1", "S=4"] not in ("", "-") and digits.loc["eta=0.5", "S=3"] == "-"
    assert "N=16" in block.label and "digits-cnn" in block.label
    for path in (tmp_path / "report").iterdir():  # real runs tag their cell folder and checkpoint path: none shows
        assert str(tmp_path).encode() not in path.read_bytes(), path.name
