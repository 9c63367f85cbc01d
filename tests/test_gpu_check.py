"""benchmarks/gpu_check.py starts correctly where there is no GPU: it refuses in one line, --dry-run shows the three
steps as the issue asks for them, and --smoke runs every step on the CPU at a tiny size to the JSONs it writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine that has one


def test_refuses_without_cuda_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--smoke" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_dry_run_lists_the_three_steps_within_eight_minutes(capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(" (cap ", 1) for line in out.splitlines() if " (cap " in line)
    assert list(lines) == ["gpu", "precision", "rehearsal_cell"]
    assert lines["gpu"].split("): ", 1)[1].startswith("python benchmarks/gpu.py")
    assert "--out" not in lines["gpu"] + lines["precision"]  # default folder: the JSONs hold no absolute path
    assert "benchmarks/precision.py --models cifar10 --device cuda" in lines["precision"]
    for setting in ("model=cifar10", "N=5000", "S=100", "precision=bf16", "compile=default", "device=cuda",
                    "rehearsal=true", "job=sample"):
        assert setting in lines["rehearsal_cell"].split()
    total = float(out.split("caps total ")[1].split(" s")[0])
    assert total <= 8 * 60 - 40  # room for starting Python, making the stand-ins and reading the cell's run
    assert str(Path("benchmarks") / "results") in out


def test_a_bad_cap_is_one_line():
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--dry-run", "--cap", "gpu=soon"])
    assert "STEP=SECONDS" in str(exit_.value.code) and "\n" not in str(exit_.value.code)


@pytest.mark.slow  # three subprocesses on the CPU (gpu.py --smoke, precision.py, one harness cell with scoring)
def test_smoke_runs_every_step_on_the_cpu(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.glob("*.json"))
    assert names == ["gpu-smoke-cpu.json", "gpu_check-cpu.json", "precision-cpu.json", "rehearsal_cell-cpu.json"]
    check = json.loads((tmp_path / "gpu_check-cpu.json").read_text())["results"]
    assert [s["step"] for s in check["steps"]] == ["gpu", "precision", "rehearsal_cell"] and not check["failed"]
    assert check["files"] == ["gpu-smoke-cpu.json", "precision-cpu.json", "rehearsal_cell-cpu.json"]
    assert all(s["command"].startswith("python ") for s in check["steps"])
    assert "dataset.root=<tmp>/data" in check["steps"][2]["command"].split()  # the temporary folder, not its path
    cell = json.loads((tmp_path / "rehearsal_cell-cpu.json").read_text())["results"]
    (run_,) = cell["runs"]
    assert run_["status"] == "FINISHED" and run_["tags"]["rehearsal"] == "true"
    assert run_["metrics"]["images_sampled"] == 4 and "fid" in run_["metrics"]
    assert "/tmp" not in json.dumps(cell["runs"])  # no path of the temporary stand-ins in a committed file
