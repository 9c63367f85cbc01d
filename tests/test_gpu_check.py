"""benchmarks/gpu_check.py starts correctly where there is no GPU: it refuses in one line, --dry-run shows the three
steps as the issue asks for them, and --smoke runs every step on the CPU at a tiny size to the JSONs it writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one


def run(*args, **kw):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=ENV, **kw)


def test_refuses_without_cuda_in_one_line(tmp_path):
    result = run("--out", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--smoke" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_dry_run_lists_the_three_steps_within_eight_minutes():
    result = run("--dry-run")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" (cap ", 1) for line in result.stdout.splitlines() if " (cap " in line)
    assert list(lines) == ["gpu", "precision", "rehearsal_cell"]
    assert lines["gpu"].split("): ", 1)[1].startswith("python benchmarks/gpu.py")
    assert "--out" not in lines["gpu"] + lines["precision"]  # default folder: the JSONs hold no absolute path
    assert "benchmarks/precision.py --models cifar10 --device cuda" in lines["precision"]
    for setting in ("model=cifar10", "N=5000", "S=100", "precision=bf16", "compile=default", "device=cuda",
                    "rehearsal=true", "job=sample"):
        assert setting in lines["rehearsal_cell"].split()
    total = float(result.stdout.split("caps total ")[1].split(" s")[0])
    assert total <= 8 * 60 - 20  # room for starting Python and making the stand-ins
    assert str(Path("benchmarks") / "results") in result.stdout


def test_a_bad_cap_is_one_line():
    result = run("--dry-run", "--cap", "gpu=soon")
    assert result.returncode != 0 and "STEP=SECONDS" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # three subprocesses on the CPU (gpu.py --smoke, precision.py, one harness cell with scoring)
def test_smoke_runs_every_step_on_the_cpu(tmp_path):
    result = run("--smoke", "--out", str(tmp_path), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["gpu-smoke-cpu.json", "gpu_check-cpu.json", "precision-cpu.json", "rehearsal_cell-cpu.json"]
    check = json.loads((tmp_path / "gpu_check-cpu.json").read_text())["results"]
    assert [s["step"] for s in check["steps"]] == ["gpu", "precision", "rehearsal_cell"] and not check["failed"]
    assert all(s["command"].startswith("python ") for s in check["steps"])
    assert "dataset.root=<tmp>/data" in check["steps"][2]["command"].split()  # the temporary folder, not its path
    cell = json.loads((tmp_path / "rehearsal_cell-cpu.json").read_text())["results"]
    (run_,) = cell["runs"]
    assert run_["status"] == "FINISHED" and run_["tags"]["rehearsal"] == "true"
    assert run_["metrics"]["images_sampled"] == 4 and "fid" in run_["metrics"]
    assert "/tmp" not in json.dumps(cell["runs"])  # no path of the temporary stand-ins in a committed file
