"""Issue 17: the stand-in files of the rehearsal are read by the real loaders; every paper preset runs on them through
the command line to FINISHED runs and a report (marker ``rehearsal``); and each first failure a user can hit at paper
scale (a wrong folder, a truncated download, a wrong checksum, a folder that differs from the published files, out of
memory) is one line naming the fix, before any sampling where it can be."""

from __future__ import annotations

import http.server
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from clitools import ROOT, cells, harness, local_server, new_store
from clitools import runs as store_runs
from harness import rehearsal
from harness.data import check_available, cifar10, ensure_available, published_problem, reference_dataset
from harness.core.errors import HarnessError
from harness.models.loading import load_checkpoint, read_state_dict
from harness.run.preflight import check_data


pytestmark = pytest.mark.usefixtures("private_caches")  # clitools.private_caches


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


# ---------------------------------------------------------------- the stand-ins, read by the real code


@pytest.fixture(scope="module")
def inception(tmp_path_factory) -> Path:
    return rehearsal.write_inception_weights(tmp_path_factory.mktemp("inception") / rehearsal.INCEPTION_FILE)


def test_standin_checkpoints_load_into_the_paper_architectures(tmp_path):
    path = rehearsal.write_official_checkpoint("cifar10", tmp_path / "ema_diffusion_cifar10_model" / "model-790000.ckpt")
    assert path.stat().st_size < 20e6  # one shared storage, not 143 MB
    model_cfg = {"name": "cifar10", "architecture": dict(rehearsal.config.load("model", "cifar10").architecture),
                 "checkpoint": {"name": "cifar10", "ema": True, "path": str(path)}}
    model, info = load_checkpoint(model_cfg)
    assert info["format"] == "state_dict" and sum(p.numel() for p in model.parameters()) == 35_746_307
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 3, 32, 32), torch.tensor([10.0, 900.0]))).all()

    ckpt = rehearsal.write_celeba_checkpoint(tmp_path / "ddim_celeba" / "ckpt.pth")
    raw = torch.load(ckpt, weights_only=True)
    assert isinstance(raw, list) and len(raw) == 5 and all(k.startswith("module.") for k in raw[0])
    assert not any(k.startswith("module.") for k in raw[4]) and set(raw[0]) == {f"module.{k}" for k in raw[4]}
    ema, info = read_state_dict(ckpt, ema=True)
    assert info == {**info, "format": "list", "weights": "ema"} and torch.equal(ema["conv_in.weight"], raw[4]["conv_in.weight"])
    raw_state, info = read_state_dict(ckpt, ema=False)
    assert info["weights"] == "raw" and torch.equal(raw_state["conv_in.weight"], raw[0]["module.conv_in.weight"])

    for name in ("lsun_bedroom", "lsun_church"):  # keys and shapes of the 113M-parameter model, without building it
        state = rehearsal.unet_state(name)
        assert sum(v.numel() for v in state.values()) == 113_673_219


def test_standin_inception_weights_load_strictly_into_torch_fidelity(inception):
    from harness.metrics.features import make_extractor

    fe = make_extractor("inception-v3-compat", ["2048"], inception, torch.device("cpu"))  # torch-fidelity's strict load
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    feats = fe(x)[0]
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and not torch.allclose(feats[0], feats[1])


def test_standin_datasets_are_read_by_the_dataset_modules(tmp_path):
    data = tmp_path / "data"
    rehearsal.write_cifar10(data)
    rehearsal.write_celeba(data)
    rehearsal.write_lsun(data, "church_outdoor")
    expect = {("cifar10", "train"): (10, 32), ("cifar10", "test"): (4, 32), ("celeba", "train"): (5, 64),
              ("celeba", "test"): (2, 64), ("lsun_church", "train"): (3, 256), ("lsun_church", "val"): (2, 256)}
    for (name, split), (n, size) in expect.items():
        cfg = {"name": name, "root": str(data)}
        assert check_available(cfg, split) is None
        images = reference_dataset(cfg, split)
        assert len(images) == n and images[n - 1].shape == (3, size, size) and images[0].dtype == torch.uint8


# ---------------------------------------------------------------- CIFAR-10: present, published, downloaded


NO_VIT = ("metrics.fd_dinov2=false", "metrics.cmmd=false")  # their networks' weights are not the point here


def cifar_cell(root: Path, *extra: str):
    (cell,) = cells("dataset=cifar10", f"dataset.root={root}", "N=4", "S=2", "metrics.blocks=2", *extra)
    return cell


def test_a_folder_that_differs_from_the_published_files_is_refused_outside_a_rehearsal(tmp_path, inception):
    rehearsal.write_cifar10(tmp_path)
    problem = one_line(published_problem({"name": "cifar10", "root": str(tmp_path)}))
    assert "data_batch_1 has md5" in problem and cifar10.published_md5()["data_batch_1"] in problem
    assert f"Delete {tmp_path / 'cifar-10-batches-py'}" in problem and "c58f30108f718f92721af3b95e74349a" in problem
    weights = f"metrics.weights_path={inception}"
    with pytest.raises(HarnessError) as err:
        check_data(cifar_cell(tmp_path, weights))
    assert str(err.value) == problem
    check_data(cifar_cell(tmp_path, weights, "rehearsal=true", *NO_VIT))  # a rehearsal reads stand-ins: no checksum check
    with pytest.raises(HarnessError, match="differs from the published files"):  # Table 2 reads the folder too
        check_data(cifar_cell(tmp_path, "job=recon", "eta=0"))


def test_a_dry_run_downloads_nothing(tmp_path):
    check_data(cifar_cell(tmp_path / "empty", "dry_run=true", "+dataset.download_url=http://127.0.0.1:9/x.tar.gz"))
    assert not (tmp_path / "empty").exists()


def test_the_fid_reference_reads_the_present_folder_without_any_download(tmp_path):
    rehearsal.write_cifar10(tmp_path)
    from torch_fidelity.registry import DATASETS_REGISTRY

    from harness.metrics.references import reference_images

    # torch-fidelity's own cifar10-train would fail torchvision's md5 check here and try to download
    ref = reference_images("cifar10-train", tmp_path, download=True)
    assert len(ref) == 10 and torch.equal(ref[3], reference_dataset({"name": "cifar10", "root": str(tmp_path)}, "train")[3])
    assert DATASETS_REGISTRY["cifar10-val"](str(tmp_path), True)[0].shape == (3, 32, 32)


def standin_archive(tmp_path: Path) -> bytes:
    rehearsal.write_cifar10(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buf.getvalue()


class _Server(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body) + (5000 if self.path == "/truncated" else 0)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    _Server.body = standin_archive(tmp_path)
    with local_server(_Server) as url:
        yield url


def test_a_truncated_download_is_one_line_and_leaves_nothing(server, tmp_path):
    root = tmp_path / "data"
    with pytest.raises(HarnessError) as err:
        ensure_available({"name": "cifar10", "root": str(root), "download_url": f"{server}/truncated"}, "train")
    line = one_line(str(err.value))
    assert "is truncated" in line and f"{server}/truncated" in line and "extract it into" in line
    assert list(root.iterdir()) == []  # no archive, no partial file


def test_a_download_with_the_wrong_checksum_is_one_line(server, tmp_path):
    root = tmp_path / "data"
    with pytest.raises(HarnessError) as err:
        ensure_available({"name": "cifar10", "root": str(root), "download_url": f"{server}/cifar-10-python.tar.gz"}, "test")
    line = one_line(str(err.value))
    assert "wrong checksum" in line and "expected md5 c58f30108f718f92721af3b95e74349a" in line
    assert list(root.iterdir()) == []


def test_the_archive_is_extracted_into_the_root(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(standin_archive(tmp_path))
    cifar10.extract_archive(archive, tmp_path / "data")
    assert check_available({"name": "cifar10", "root": str(tmp_path / "data")}, "train") is None


def test_a_wrong_folder_fails_before_sampling_in_one_line(tmp_path, inception):
    """dataset.root at a folder without CIFAR-10, offline: the download fails at once, nothing is sampled."""
    ckpt = rehearsal.write_official_checkpoint("cifar10", tmp_path / "model-790000.ckpt")
    proc = harness(tmp_path, "dataset=cifar10", f"dataset.root={tmp_path / 'wrong'}", f"model.checkpoint.path={ckpt}",
                   f"metrics.weights_path={inception}",
                   "+dataset.download_url=http://127.0.0.1:9/cifar-10-python.tar.gz", "N=4", "S=2", "metrics.blocks=2", "device=cpu", check=False)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert "download of http://127.0.0.1:9/cifar-10-python.tar.gz" in line and "failed" in line
    assert f"extract it into {tmp_path / 'wrong'}" in line
    assert not (tmp_path / "out" / "images").exists()  # failed before any sampling


def test_a_wrong_inception_weights_path_fails_before_sampling(tmp_path):
    rehearsal.write_cifar10(tmp_path)
    with pytest.raises(HarnessError) as err:
        check_data(cifar_cell(tmp_path, "rehearsal=true", f"metrics.weights_path={tmp_path / 'typo.pth'}"))
    line = one_line(str(err.value))
    assert f"{tmp_path / 'typo.pth'} not found; fix metrics.weights_path" in line


# ---------------------------------------------------------------- out of memory


class OutOfMemoryNet(torch.nn.Module):
    """A stand-in network that runs out of device memory on its first call, as CUDA does at too large a batch."""

    def forward(self, x, t):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.3 GiB total capacity)")


def test_out_of_memory_is_one_line_suggesting_a_smaller_batch(tmp_path, monkeypatch):
    from harness.run.jobs.context import JobContext
    from harness.run.runner import run_cell

    db = new_store(tmp_path / "mlflow.db")
    (cell,) = cells("dataset=digits", "N=8", "S=2", "batch_size=8", f"output_root={tmp_path / 'out'}",
                    f"tracking.uri=sqlite:///{db}", "progress=false")
    monkeypatch.setattr(JobContext, "load_model", lambda self: OutOfMemoryNet())
    outcome = run_cell(cell)
    assert outcome.status == "FAILED"
    line = one_line(outcome.error)
    assert "out of memory on cpu at batch_size=8" in line and "rerun with batch_size=4" in line
    assert "metrics.batch_size=250" in line and "Tried to allocate 2.00 GiB" in line
    run = mlflow.MlflowClient(f"sqlite:///{db}").get_run(outcome.run_id)
    assert run.info.status == "FAILED" and "rerun with batch_size=4" in run.data.tags["error"]


# ---------------------------------------------------------------- the rehearsal of every preset


@pytest.mark.rehearsal
@pytest.mark.slow
def test_rehearsal_of_every_paper_preset(tmp_path):
    """python -m harness.rehearsal: every preset to FINISHED runs on stand-ins, then the report beside the paper."""
    out = tmp_path / "rehearsal"
    proc = subprocess.run([sys.executable, "-m", "harness.rehearsal", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((out / "rehearsal.json").read_text())
    assert [c["name"] for c in record["commands"]] == [*rehearsal.PRESETS, "report"]
    assert all(c["returncode"] == 0 for c in record["commands"])

    runs = store_runs(out)
    cells_ = runs[runs["tags.kind"] == "cell"]
    assert len(cells_) == 3 + 1 + 1 + 2 + 1 + 1 + 1 + 8 and (cells_["status"] == "FINISHED").all()
    assert (runs["tags.rehearsal"] == "true").all()
    assert sorted(set(cells_["params.dataset"])) == ["celeba", "cifar10", "lsun_bedroom", "lsun_church"]
    assert sorted(set(cells_["params.job"])) == ["recon", "sample", "timing"]

    report = out / "report"
    index = (report / "report.md").read_text()
    assert index.count(rehearsal_banner()) >= 3  # the title, the banner section, every table
    table1 = (report / "table1.md").read_text()
    assert table1.startswith("## " + rehearsal_banner()) or rehearsal_banner() in table1.splitlines()[0]
    assert "13.36" in table1  # the paper's CIFAR-10 FID at S=10, eta=0, beside the rehearsal's S=2 cells
    # issue 26: one repeat in blocks (the paper's budget): an interval on every Table 1 and 3 FID, verdicts decided
    assert "Cells scored in blocks (K=2 blocks per repeat" in table1
    for n in (1, 3):
        long = pd.read_csv(report / f"table{n}_long.csv")
        fid = long[(long["metric"] == "fid") & long["measured"].notna()]
        assert len(fid) and (fid["ci95_low"] < fid["measured"]).all() and (fid["measured"] < fid["ci95_high"]).all()
    claims = pd.read_csv(report / "claims.csv")
    decided = claims[(claims["kind"] == "claim") & claims["verdict"].isin(["PASS", "FAIL", "within noise"])]
    assert {", ".join(s.split(", ")[:2]) for s in decided["scope"]} == {"Table 1, CIFAR-10", "Table 3, LSUN Bedroom"}
    assert decided["evidence"].str.contains("block jackknife over K=2 blocks of 2 images").all()
    for block in ("CIFAR-10: FD_DINOv2 in dinov2-vit-l-14 features", "CIFAR-10: CMMD in clip-vit-l-14-336 features"):
        assert block in table1  # today's metrics beside FID, K=2: with intervals
        assert "\u00b1" in table1.split(block, 1)[1].split("\n\n", 2)[1]
    assert "FD_DINOv2" in (report / "table3.md").read_text() and "CMMD" in (report / "claims.md").read_text()
    # a report of real runs never takes them in silently
    proc = subprocess.run([sys.executable, "-m", "harness.report", "--tracking-uri", f"sqlite:///{out / 'mlflow.db'}",
                           "--out", str(tmp_path / "real")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--rehearsal" in one_line(proc.stderr)


def rehearsal_banner() -> str:
    from harness.report.runs import REHEARSAL_BANNER

    return REHEARSAL_BANNER


def test_the_rehearsal_names_every_paper_preset():
    presets = {p.stem for p in (ROOT / "sweeps").glob("*.yaml")} - {"default", "default_recon", "default_timing",
                                                                    "samplers", "samplers_exact"}
    assert set(rehearsal.PRESETS) == presets == set(rehearsal.PRESET_DATASET)
