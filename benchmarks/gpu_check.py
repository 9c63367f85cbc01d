"""The GPU check, one command for a machine with one CUDA GPU: three steps, each a subprocess with a time cap, so the
whole check ends within about 8 minutes (the caps add up to 440 s, plus starting Python, making the stand-ins and
reading the cell's run):

1. ``benchmarks/gpu.py`` (fewer repeats than its defaults): the CIFAR-10 U-Net per precision and compile mode, the
   whole sampler, the sampler overhead;
2. ``benchmarks/precision.py --models cifar10 --device cuda`` (``--N 256``, one batch per set): how far
   bf16/tf32/compiled samples move from fp32 eager;
3. a rehearsal cell of the CIFAR-10 architecture through the harness's own command line: 5,000 images at S=100
   (quad tau, eta 0) in bf16 with ``compile=default``, sampled and scored (Inception FID against the cifar10-train
   reference), on stand-in files made by ``harness.rehearsal`` in a temporary folder: a random official-format
   checkpoint, random torch-fidelity Inception weights, CIFAR-10 python batches of random images. Its scores mean
   nothing; its times (sampling, compile, scoring, whole cell) are the point.

Every JSON goes to ``benchmarks/results/`` (``--out`` to put them elsewhere): ``gpu-cuda-<gpu>.json``,
``precision-cuda-<gpu>.json``, ``rehearsal_cell-cuda-<gpu>.json`` and ``gpu_check-cuda-<gpu>.json`` (each step's
command, exit status, seconds, and whether it hit its cap). A step that hits its cap is stopped and recorded as such;
raise it with ``--cap STEP=SECONDS`` and rerun that step alone with ``--only STEP``.

    python benchmarks/gpu_check.py                    # on the GPU machine; then commit benchmarks/results/
    python benchmarks/gpu_check.py --dry-run          # any machine: the steps, their commands and caps; runs nothing
    python benchmarks/gpu_check.py --smoke --out DIR  # any machine: every step on the CPU at a tiny size (a test of
                                                      # the script, not a measurement; JSONs only under DIR)

Without a CUDA device (and without --smoke or --dry-run) it refuses in one line and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import torch
from common import RESULTS, ROOT, Bench, device_tag

STEPS = ("gpu", "precision", "rehearsal_cell")
CAPS = {"gpu": 200, "precision": 115, "rehearsal_cell": 125}  # seconds; limits chosen to fit 8 minutes, not measured
# FD_DINOv2 and CMMD are off: their weights are not on the lent machine (no internet there), and their cost has its
# own benchmark (benchmarks/vit_metrics_cost.py). The cell keeps CIFAR-10's 10 blocks (5,000 = 10 x 500).
NO_VIT = {"metrics.fd_dinov2": "false", "metrics.cmmd": "false"}
CELL = {"N": 5000, "S": 100, "eta": 0, "batch_size": 500, "precision": "bf16", "compile": "default", **NO_VIT}
SMOKE_CELL = {"N": 4, "S": 2, "eta": 0, "batch_size": 4, "precision": "fp32", "compile": "none",
              "metrics.kid_subset_size": 2, "metrics.prc_neighborhood": 1, "metrics.blocks": 2, **NO_VIT}


def step_commands(out: Path, smoke: bool) -> dict[str, list[str]]:
    """The benchmark scripts' command lines (the rehearsal cell's is made once its stand-ins exist). They write to
    benchmarks/results by default: ``--out`` only for another folder, so committed JSONs hold no absolute path."""
    py = sys.executable
    to = [] if out == RESULTS else ["--out", str(out)]
    if smoke:
        return {"gpu": [py, "benchmarks/gpu.py", "--smoke", *to],
                "precision": [py, "benchmarks/precision.py", "--models", "digits", "--device", "cpu", "--N", "8",
                              "--batch", "8", "--S", "2", "--etas", "0", *to]}
    return {"gpu": [py, "benchmarks/gpu.py", "--repeats", "5", "--warmup", "2", "--sampler-repeats", "1",
                    "--overhead-repeats", "1", *to],
            "precision": [py, "benchmarks/precision.py", "--models", "cifar10", "--device", "cuda", "--N", "256", *to]}


def shown(cmd: list[str], tmp: str | None = None) -> str:
    """A command as recorded: ``python`` for the interpreter, ``<tmp>`` for the stand-ins' temporary folder."""
    text = shlex.join(["python", *cmd[1:]] if cmd[0] == sys.executable else cmd)
    return text.replace(tmp, "<tmp>") if tmp else text


def cell_command(files: dict[str, Path], cell: dict, device: str) -> list[str]:
    """``python -m harness`` for one CIFAR-10 sample cell on the stand-in files, marked as a rehearsal."""
    return [sys.executable, "-m", "harness", "dataset=cifar10", "model=cifar10", "job=sample", "rehearsal=true",
            f"device={device}", "progress=false", *(f"{k}={v}" for k, v in cell.items()),
            f"dataset.root={files['data']}", f"model.checkpoint.path={files['checkpoint']}",
            f"metrics.weights_path={files['inception']}", f"tracking.uri=sqlite:///{files['root'] / 'mlflow.db'}",
            f"output_root={files['root'] / 'outputs'}"]


def make_cell_files(root: Path, smoke: bool) -> dict[str, Path]:
    """The rehearsal cell's stand-ins: 5,000 CIFAR-10 training images (1,000 per batch file, so KID's subsets of
    1,000 fit), or 10 for --smoke; an official-format random checkpoint; random Inception weights."""
    from harness.rehearsal import INCEPTION_FILE, write_cifar10, write_inception_weights, write_official_checkpoint

    data = root / "data"
    write_cifar10(data, per_batch=2 if smoke else 1000)
    return {"root": root, "data": data,
            "checkpoint": write_official_checkpoint("cifar10", root / "ema_cifar10.ckpt"),
            "inception": write_inception_weights(root / INCEPTION_FILE)}


def run_step(name: str, cmd: list[str], cap: float, env: dict, tmp: str) -> dict:
    """Run one step (its output streams to the console); stop it at ``cap`` seconds."""
    print(f"\n=== {name} (cap {cap:g} s): {shown(cmd)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        code, capped = proc.wait(timeout=cap), False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the step and the workers it started
        code, capped = proc.wait(), True
    seconds = time.perf_counter() - start
    print(f"=== {name}: {'STOPPED at its cap' if capped else f'exit {code}'} after {seconds:.1f} s", flush=True)
    return {"step": name, "command": shown(cmd, tmp), "cap_s": cap, "seconds": round(seconds, 1), "exit": code,
            "hit_cap": capped}


def cell_record(files: dict[str, Path]) -> dict:
    """The rehearsal cell's MLflow run: its status, params, metrics and tags (no absolute paths)."""
    from mlflow.tracking import MlflowClient  # reason: mlflow is slow to import and only this step needs it

    client = MlflowClient(tracking_uri=f"sqlite:///{files['root'] / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    return {"runs": [{"status": r.info.status, "params": r.data.params, "metrics": r.data.metrics,
                      "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")
                               and not str(v).startswith(str(files["root"]))}} for r in runs]}


def parse_caps(values: list[str]) -> dict[str, float]:
    caps = dict(CAPS)
    for value in values:
        step, _, seconds = value.partition("=")
        if step not in STEPS or not seconds.replace(".", "", 1).isdigit():
            raise SystemExit(f"gpu_check: --cap {value!r}: use STEP=SECONDS with STEP one of {', '.join(STEPS)}.")
        caps[step] = float(seconds)
    return caps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help=f"folder for the JSONs (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=None, help="run only these steps")
    parser.add_argument("--cap", action="append", default=[], metavar="STEP=SECONDS",
                        help=f"a step's time cap (defaults: {', '.join(f'{k}={v}' for k, v in CAPS.items())})")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, commands and caps; run nothing")
    parser.add_argument("--smoke", action="store_true",
                        help="every step on the CPU at a tiny size (needs --out): tests the script, measures nothing")
    args = parser.parse_args(argv)
    caps, steps = parse_caps(args.cap), args.only or list(STEPS)
    if args.smoke and args.out is None:
        raise SystemExit("gpu_check: --smoke needs --out DIR (its numbers mean nothing and stay out of "
                         "benchmarks/results).")
    out = Path(args.out).resolve() if args.out else RESULTS
    cell, device = (SMOKE_CELL, "cpu") if args.smoke else (CELL, "cuda")
    commands = step_commands(out, args.smoke)
    if args.dry_run:
        placeholder = {k: Path(f"<stand-ins>/{k}") for k in ("root", "data", "checkpoint", "inception")}
        commands["rehearsal_cell"] = cell_command(placeholder, cell, device)
        for step in steps:
            print(f"{step} (cap {caps[step]:g} s): {shown(commands[step])}")
        print(f"caps total {sum(caps[s] for s in steps):g} s; JSONs to {out}")
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}): run it "
              "on a machine with an NVIDIA GPU; --dry-run prints its steps, --smoke --out DIR tries them on the CPU.",
              file=sys.stderr)
        return 1
    bench, started = Bench("gpu_check", args), time.time()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    env.pop("MLFLOW_TRACKING_URI", None)
    records = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        env["DDIM_HARNESS_CACHE"] = str(Path(tmp) / "cache")  # verified weights copies etc. stay in the temp folder
        for step in steps:
            if step != "rehearsal_cell":
                records.append(run_step(step, commands[step], caps[step], env, tmp))
                continue
            start = time.perf_counter()
            files = make_cell_files(Path(tmp), args.smoke)
            made = time.perf_counter() - start
            record = run_step(step, cell_command(files, cell, device), caps[step], env, tmp)
            record["stand_ins_s"] = round(made, 1)
            records.append(record)
            cell_bench = Bench("rehearsal_cell", argparse.Namespace(cell=cell, device=device, smoke=args.smoke))
            cell_bench.write(torch.device(device), {"cell": cell, "smoke": args.smoke, "stand_ins_s": record["stand_ins_s"],
                                                    "wall_s": record["seconds"], "exit": record["exit"],
                                                    "hit_cap": record["hit_cap"], **cell_record(files)}, out)
    failed = [r["step"] for r in records if r["exit"] != 0 or r["hit_cap"]]
    device_used = torch.device("cuda" if not args.smoke else "cpu")
    bench.write(device_used, {"smoke": args.smoke, "steps": records, "failed": failed,
                              "files": sorted(p.name for p in out.glob(f"*-{device_tag(device_used)}.json")
                                              if p.stat().st_mtime >= started)}, out)  # written by this check
    print(f"gpu_check: {len(records) - len(failed)} of {len(records)} steps passed"
          + (f"; failed or stopped: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
