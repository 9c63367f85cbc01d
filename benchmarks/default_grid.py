"""The README's main command end to end, and where its time goes.

Runs ``python -m harness -m eta=0,0.2,0.5,1 S=10,20,50,100 progress=false <extra>`` as a subprocess in a temporary
working directory (fresh SQLite store ``mlflow.db``, fresh ``DDIM_HARNESS_CACHE``, so the first cell computes the
reference features), measures its wall time, then reads the cells' runs back from the store and reports, per cell
and in total: sampling seconds (metric ``sampling_seconds``), scoring seconds (metric ``fid_seconds``: the whole
metric suite over every repeat), and the rest of each job (MLflow run end - start minus those two: model loading,
logging, artifacts); then the whole command's wall time against the sum of the job times (> 1: jobs ran in
parallel; the wall time also holds Hydra's and each worker's start-up). Checks that every cell has one FINISHED
run, and prints the FID table (eta x S) with the 95% intervals over repeats.

    python benchmarks/default_grid.py                   # the README's grid with the default N and repeats
    python benchmarks/default_grid.py --extra N=100 repeats=2 hydra.launcher.n_jobs=1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import ROOT, Bench, print_table


def read_runs(workdir: Path) -> list[dict]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ddim-harness")
    runs = client.search_runs([exp.experiment_id], "tags.kind = 'cell'", max_results=1000) if exp else []
    cells = []
    for r in runs:
        m, end = r.data.metrics, r.info.end_time
        job_s = (end - r.info.start_time) / 1000 if end else None
        sampling, fid_s = m.get("sampling_seconds"), m.get("fid_seconds")
        cells.append({
            "eta": r.data.params.get("eta"), "S": int(r.data.params.get("S", 0)), "nfe": r.data.params.get("nfe"),
            "status": r.info.status, "run_id": r.info.run_id, "fid": m.get("fid"),
            "fid_ci95": [m.get("fid_ci95_low"), m.get("fid_ci95_high")], "N": r.data.params.get("N"),
            "repeats": r.data.params.get("repeats"),
            "job_s": job_s, "sampling_s": sampling, "fid_s": fid_s,
            "rest_s": job_s - (sampling or 0) - (fid_s or 0) if job_s is not None else None,
            "start_ms": r.info.start_time, "end_ms": end, "threads": r.data.tags.get("threads"),
        })
    return sorted(cells, key=lambda c: (float(c["eta"]) if c["eta"] != "hat" else 1e9, c["S"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eta", default="0,0.2,0.5,1", help="the sweep's eta values (the README's)")
    parser.add_argument("--S", default="10,20,50,100", help="the sweep's S values (the README's)")
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides, e.g. hydra.launcher.n_jobs=1")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working directory and print it")
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args()
    bench = Bench("default_grid", args)
    expected = len(args.eta.split(",")) * len(args.S.split(","))

    workdir = Path(tempfile.mkdtemp(prefix="default-grid-"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(DDIM_HARNESS_CACHE=str(workdir / "cache"), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "harness", "-m", f"eta={args.eta}", f"S={args.S}", "progress=false", *args.extra]
    print(f"running in a temporary folder:\n  {' '.join(cmd[1:])}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    (workdir / "stdout.log").write_text(proc.stdout)
    (workdir / "stderr.log").write_text(proc.stderr)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        sys.exit(f"the command failed with exit status {proc.returncode}; logs in {workdir} (kept)")

    cells = read_runs(workdir)
    finished = [c for c in cells if c["status"] == "FINISHED"]
    fid_logged = all(c["fid_s"] is not None for c in finished)
    total = {k: sum(c[k] or 0 for c in finished) for k in ("job_s", "sampling_s", "fid_s", "rest_s")}
    first = min((c["start_ms"] for c in finished), default=0)
    last = max((c["end_ms"] for c in finished), default=0)
    print_table(finished + [{"eta": "total", **total}],
                [("eta", "eta", "s"), ("S", "S", "d"), ("status", "status", "s"), ("job_s", "job s", ".2f"),
                 ("sampling_s", "sampling s", ".2f"), ("fid_s", "FID s", ".2f"), ("rest_s", "rest s", ".2f"),
                 ("fid", "FID", ".3f")], f"per cell (N={finished[0]['N'] if finished else '?'} x "
                                         f"{finished[0]['repeats'] if finished else '?'} repeats); rest = job - sampling - scoring")
    if not fid_logged:
        print("note: metric fid_seconds is absent from some runs (the sample job does not log it): "
              "FID time is counted in 'rest'.")
    print(f"\ncommand wall time {wall_s:.1f} s; sum of job times {total['job_s']:.1f} s "
          f"(ratio {total['job_s'] / wall_s:.2f}: > 1 means jobs ran in parallel); "
          f"first run start to last run end {(last - first) / 1000:.1f} s; "
          f"start-up before the first run and after the last {wall_s - (last - first) / 1000:.1f} s")

    etas = list(dict.fromkeys(c["eta"] for c in finished))
    steps = sorted({c["S"] for c in finished})
    def shown(c):
        low = c["fid_ci95"][0]
        return f"{c['fid']:.3f}" + (f" +- {c['fid'] - low:.2f}" if low is not None else "")

    fid = {(c["eta"], c["S"]): shown(c) for c in finished}
    print_table([{"eta": e, **{f"S={s}": fid.get((e, s), "-") for s in steps}} for e in etas],
                [("eta", "eta \\ S", "s")] + [(f"S={s}", f"S={s}", "s") for s in steps],
                "FID (digits-cnn vs digits-train), mean +- 95% CI half-width over repeats")

    ok = len(cells) == expected and len(finished) == expected
    print(f"\n{len(finished)} FINISHED runs of {len(cells)} in the store, {expected} expected: {'OK' if ok else 'MISMATCH'}")
    bench.write(torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda"), {
        "eta": args.eta, "S": args.S, "extra": args.extra, "subprocess": cmd[1:],
        "wall_s": wall_s, "sum_job_s": total["job_s"], "parallelism": total["job_s"] / wall_s,
        "runs_span_s": (last - first) / 1000, "totals": total, "fid_seconds_logged": fid_logged,
        "expected_runs": expected, "finished_runs": len(finished), "all_finished": ok, "cells": cells,
        "stdout_tail": proc.stdout[-4000:],
    }, args.out)
    if args.keep:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
