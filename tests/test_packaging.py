"""The package as users get it: a wheel that carries the configs and presets and runs from any folder; --help."""

import pytest
import os
import subprocess
import sys
import zipfile

from clitools import ROOT


@pytest.mark.slow
def test_wheel_ships_configs_and_runs_from_another_folder(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("ddim_harness-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("harness/conf/config.yaml", "harness/conf/dataset/digits.yaml", "harness/conf/sweeps/default.yaml",
                     "harness/conf/sweeps/table1_cifar10.yaml", "harness/conf/hydra/launcher/parallel.yaml",
                     "harness/assets/digits_unet.pt", "harness/report/paper_values.csv",
                     "hydra_plugins/ddim_harness/__init__.py"):
        assert expected in names, expected
    assert not any(n.startswith(("conf/", "sweeps/", "tests/")) for n in names)

    site = tmp_path / "site"  # the wheel installed alone; PYTHONPATH puts it before the editable checkout
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), DDIM_HARNESS_CACHE=str(tmp_path / "cache"))
    which = subprocess.run([sys.executable, "-c", "import harness, harness.conf; print(harness.conf.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert which.stdout.startswith(str(site))
    proc = subprocess.run([sys.executable, "-m", "harness", "-m", "S=10,20", "sweeps=default", "dry_run=true"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "S=10 eta=hat digits/sample" in proc.stdout and "cells: 0 done" in proc.stdout
    assert not (elsewhere / "outputs" / "images").exists()


def test_help_documents_the_keys_and_groups_only():
    proc = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0
    for text in ("== Keys ==", "repeats", "sampler", "dataset: celeba, cifar10, digits", "sweeps: default",
                 "table1_cifar10"):
        assert text in proc.stdout, text
    assert ".venv" not in proc.stdout and "mlartifacts" not in proc.stdout and "torchgen" not in proc.stdout
