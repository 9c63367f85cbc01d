"""Cells that grow by repeats (issue 19, item 4): raising ``repeats`` on a finished cell keeps its repeats bitwise
(images k*N .. (k+1)*N - 1 and their metrics), samples only the new ones, and logs a new run that records what it
reused; the report takes the larger cell."""

import pytest
import torch
from clitools import harness, runs

from harness.report.runs import load_runs
from harness.report.tables import build_tables

COMMON = ["N=10", "batch_size=8", "S=4", "eta=1", "job.grid_images=10"]


def images(root, n):
    (folder,) = (root / "out" / "images").iterdir()  # one images folder: the grown cell shares the small one's
    out = torch.zeros((n, 1, 8, 8), dtype=torch.uint8)
    seen = torch.zeros(n, dtype=torch.bool)
    for p in sorted(folder.glob("*.pt")):
        s = torch.load(p, weights_only=True)
        keep = s["indices"] < n
        out[s["indices"][keep]], seen[s["indices"][keep]] = s["images"][keep], True
    assert seen.all()
    return out


def per_repeat(row, K):
    names = sorted(c for c in row.index if c.startswith("metrics.") and c.rsplit("_r", 1)[-1].isdigit()
                   and int(c.rsplit("_r", 1)[-1]) < K)
    return {n: row[n] for n in names}


@pytest.mark.slow
def test_a_grown_cell_keeps_its_first_repeats_bitwise(tmp_path, capsys):
    harness(tmp_path, *COMMON, "repeats=2")
    small_images = images(tmp_path, 20).clone()
    small = runs(tmp_path).iloc[0]

    harness(tmp_path, *COMMON, "repeats=4")
    df = runs(tmp_path)
    grown = df[df["params.repeats"] == "4"].iloc[0]
    assert torch.equal(images(tmp_path, 20), small_images)  # repeats 0 and 1: the very same images
    before, after = per_repeat(small, 2), per_repeat(grown, 2)
    assert len(before) >= 10 and {"metrics.fid_r0", "metrics.kid_r1", "metrics.fd_pixels_r1"} <= set(before)
    assert after == before  # every metric of repeats 0 and 1, exactly (no tolerance)
    assert "metrics.fid_r3" in grown and "metrics.fid_r4" not in df
    assert (grown["metrics.images_sampled"], grown["metrics.images_reused"]) == (20, 20)  # only repeats 2 and 3 sampled
    assert grown["tags.grown_from"] == small["run_id"] and grown["tags.grown_from_repeats"] == "2"
    assert grown["tags.cell_series"] == small["tags.cell_series"] and grown["tags.cell_key"] != small["tags.cell_key"]
    assert small.get("tags.grown_from") is None or small["tags.grown_from"] != small["tags.grown_from"]  # NaN: none

    (table1, *_) = build_tables(load_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "ddim-harness"))
    (block,) = [b for b in table1.blocks if b.dataset == "digits" and not b.paper_only]
    assert block.measured.loc[("1", 4), "run_id"] == grown["run_id"]  # the larger cell, not the smaller

    # growing it again: the dry run counts the 40 images there and prices only the 20 new ones
    from clitools import cells

    from harness.run.dryrun import print_plan

    print_plan(cells("dry_run=true", *COMMON, "repeats=6", f"output_root={tmp_path / 'out'}",
                     f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"))
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "eta=1 digits/sample [uniform, 6 x 10 images]" in x]
    assert ": NFE 4, on cpu, to run, " in line and line.endswith(" (40 of its images already sampled)")
