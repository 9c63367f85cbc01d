"""Diffusers-format checkpoints (harness.models.hub, harness.models.diffusers_format): a UNet2DModel folder, or a hub repo id taken
from the Hugging Face cache, made at test time with random weights in the real format (diffusers' save_pretrained, the
hub's 2022 key names and .bin files, the hub's cache layout), loaded through the harness and checked against
diffusers' own forward on the same inputs. No network: the hub is only ever offline here."""

import hashlib
import http.server
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel
from huggingface_hub import constants as hub_constants
from omegaconf import OmegaConf
from clitools import cells, harness, local_server, runs
from safetensors.torch import save_file

from harness import rehearsal
from harness.models.checkpoints import REGISTRY, availability
from harness.models.diffusers_format import architecture_from_config
from harness.core.errors import HarnessError
from harness.models.hub import HUB_MODELS
from harness.run.inputs import checkpoint_identity
from harness.models.loading import load_checkpoint

CONF = Path(__file__).resolve().parent.parent / "conf" / "model"
# The settings every google/ddpm-* config.json carries (the hub's ddpm-cat-256 config, in full, below).
HUB_STYLE = {"attention_head_dim": None, "norm_eps": 1e-6, "flip_sin_to_cos": False, "freq_shift": 1,
             "downsample_padding": 0}
CAT_256_CONFIG = {  # google/ddpm-cat-256's config.json as published (the LSUN 256 architecture)
    "_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 128, 256, 256, 512, 512], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 256,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
}
OLD_ATTENTION_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}  # diffusers < 0.14


def model_config(name, **checkpoint):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    cfg["checkpoint"].update({"name": None, **checkpoint})
    return cfg


def hub_unet(name, seed=0):
    """A diffusers UNet2DModel of conf/model/<name>'s architecture, configured as the hub's DDPM models are, with
    random weights (every parameter perturbed, so a swapped norm or bias cannot go unnoticed)."""
    a = OmegaConf.load(CONF / f"{name}.yaml").architecture
    down = ["AttnDownBlock2D" if a.resolution >> level in a.attn_resolutions else "DownBlock2D"
            for level in range(len(a.ch_mult))]
    with torch.device("meta"):  # no default initialisation (seconds for the larger models): filled below
        unet = UNet2DModel(sample_size=a.resolution, in_channels=a.in_channels, out_channels=a.out_ch,
                           block_out_channels=[a.ch * m for m in a.ch_mult], layers_per_block=a.num_res_blocks,
                           down_block_types=down, up_block_types=[d.replace("Down", "Up") for d in reversed(down)],
                           norm_num_groups=a.num_groups, dropout=a.dropout, **HUB_STYLE)
    unet = unet.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if p.dim() > 1:  # weights: variance-preserving scale
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            else:  # norm scales around 1, biases around 0
                p.copy_(("norm" in name and name.endswith("weight")) + 0.05 * torch.randn(p.shape, generator=g))
    return unet


def inputs(unet, batch):
    g = torch.Generator().manual_seed(1)
    size = unet.config.sample_size
    x = torch.randn(batch, unet.config.in_channels, size, size, generator=g)
    return x, torch.linspace(0, 999, batch).round().long()  # one timestep per image, 0 and 999 included


def relative_difference(ours, theirs):
    return ((ours - theirs).norm() / theirs.norm()).item()


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    """(diffusers model, folder written by save_pretrained) for the CIFAR-10 architecture."""
    unet = hub_unet("cifar10")
    folder = tmp_path_factory.mktemp("ddpm-cifar10-32")
    unet.save_pretrained(folder)
    return unet, folder


def check_forward(unet, model, batch):
    x, t = inputs(unet, batch)
    with torch.no_grad():
        theirs, ours = unet(x, t).sample, model(x, t)
    assert relative_difference(ours, theirs) <= 1e-5
    return ours


def test_cifar10_folder_matches_diffusers(cifar10):
    unet, folder = cifar10
    model, info = load_checkpoint(model_config("cifar10", path=str(folder)))
    check_forward(unet, model, batch=3)
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert info["path"] == str(weights) and info["format"] == "diffusers"
    assert info["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()  # provenance: the published file


@pytest.mark.slow  # 21-25 s here (five levels at 64x64 through both networks)
def test_celeba_folder_matches_diffusers(tmp_path):
    unet = hub_unet("celeba", seed=2)
    unet.save_pretrained(tmp_path)
    model, _ = load_checkpoint(model_config("celeba", path=str(tmp_path)))
    check_forward(unet, model, batch=2)


@pytest.mark.slow  # a 114M-parameter model written (455 MB) and run at 256x256 on the CPU
def test_lsun_256_folder_matches_diffusers(tmp_path):
    """conf/model/lsun_church and lsun_bedroom share this architecture (the test below checks the hub's)."""
    unet = hub_unet("lsun_church", seed=3)
    unet.save_pretrained(tmp_path)
    model, _ = load_checkpoint(model_config("lsun_bedroom", path=str(tmp_path)))
    check_forward(unet, model, batch=2)


def test_2022_hub_files_bin_with_old_attention_names_under_unet(cifar10, tmp_path):
    """The google/ddpm-* repos were converted in 2022: attention weights named query/key/value/proj_attn, a pickled
    .bin (read with weights_only=True), and pipeline repos keep the U-Net under unet/."""
    unet, folder = cifar10
    state = {}
    for key, value in unet.state_dict().items():
        for new, old in OLD_ATTENTION_NAMES.items():
            key = key.replace(f".{new}.", f".{old}.")
        state[key] = value
    assert any(".proj_attn." in k for k in state)
    (tmp_path / "unet").mkdir()
    unet.save_config(tmp_path / "unet")
    torch.save(state, tmp_path / "unet" / "diffusion_pytorch_model.bin")
    old, info = load_checkpoint(model_config("cifar10", path=str(tmp_path)))
    new, _ = load_checkpoint(model_config("cifar10", path=str(folder)))
    assert info["path"].endswith("unet/diffusion_pytorch_model.bin")
    assert torch.equal(check_forward(unet, old, batch=2), check_forward(unet, new, batch=2))


def fake_hub_cache(cache: Path, repo: str, folder: Path, commit="0123456789abcdef0123456789abcdef01234567") -> Path:
    """The Hugging Face cache layout after a download of ``repo``: refs/main names the commit, snapshots/<commit>
    holds the files."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(commit)
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        shutil.copy(folder / name, snapshot / name)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_repo_from_the_offline_cache_records_how_it_differs(cifar10, offline_cache):
    unet, folder = cifar10
    repo = "google/ddpm-cifar10-32"
    snapshot = fake_hub_cache(offline_cache, repo, folder)
    ok, text = availability("cifar10", hub=repo)
    assert ok and "cache" in text
    model, info = load_checkpoint(model_config("cifar10", hub=repo))
    check_forward(unet, model, batch=2)
    assert info["hub"] == f"{repo}@{snapshot.name}" and info["checkpoint"] == repo
    assert info["weights"] == HUB_MODELS[repo].weights == "unstated"  # the model card does not say
    assert "790000" in info["note"] and "EMA" in info["note"]


def test_hub_repo_missing_offline_is_one_line(offline_cache):
    ok, text = availability("cifar10", hub="google/ddpm-cifar10-32")
    assert not ok and "HF_HUB_OFFLINE=1" in text
    with pytest.raises(HarnessError) as err:
        load_checkpoint(model_config("cifar10", hub="google/ddpm-cifar10-32"))
    message = str(err.value)
    assert "\n" not in message and "HF_HUB_OFFLINE=1" in message and "model.checkpoint.path=" in message


class FakeHub(http.server.BaseHTTPRequestHandler):
    """The hub's API as a local server: repos named "missing" do not exist (404 RepoNotFound), the rest fail (500)."""

    def do_GET(self):
        missing = "/missing/" in self.path
        self.send_response(404 if missing else 500)
        if missing:
            self.send_header("X-Error-Code", "RepoNotFound")
        self.end_headers()
        self.wfile.write(b'{"error": "Repository not found"}' if missing else b"down")

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


def test_hub_errors_online_are_one_line(offline_cache, monkeypatch):
    with local_server(FakeHub) as url:
        monkeypatch.setattr(hub_constants, "ENDPOINT", url)
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        for repo, message in [("someone/missing", "does not exist"), ("google/ddpm-cifar10-32", "cannot be reached")]:
            with pytest.raises(HarnessError) as err:
                load_checkpoint(model_config("cifar10", hub=repo))
            assert message in str(err.value) and "\n" not in str(err.value)


def test_hub_repo_of_another_model_is_refused_before_download(offline_cache):
    with pytest.raises(HarnessError) as err:  # CelebA-HQ 256 has the LSUN 256 shapes: the registry tells them apart
        load_checkpoint(model_config("lsun_church", hub="google/ddpm-ema-celebahq-256"))
    assert "CelebA-HQ" in str(err.value) and "google/ddpm-ema-church-256" in str(err.value)
    with pytest.raises(HarnessError, match="model=lsun_bedroom"):
        load_checkpoint(model_config("lsun_church", hub="google/ddpm-ema-bedroom-256"))


def test_a_hub_checkpoint_is_checked_before_any_cell_runs(offline_cache):
    from harness.run.preflight import check_environment

    for hub, message in [("google/ddpm-ema-celebahq-256", "CelebA-HQ"), ("google/ddpm-cifar10-32", "HF_HUB_OFFLINE=1")]:
        cell = cells("dataset=cifar10", f"model.checkpoint.hub={hub}")[0]
        with pytest.raises(HarnessError, match=message):
            check_environment(cell)


def test_registry_names_a_hub_repo_for_each_paper_model_but_celeba():
    for name in ("cifar10", "lsun_church", "lsun_bedroom"):
        assert any(m.model == name for m in HUB_MODELS.values())
    assert not any(m.model == "celeba" for m in HUB_MODELS.values())  # the authors' CelebA 64 model is not there
    for m in HUB_MODELS.values():
        assert m.weights == ("ema" if "-ema-" in m.repo else "unstated" if m.repo.endswith("cifar10-32") else "raw")
        assert m.official is None or m.official in REGISTRY  # the DDIM code's file for the same model


def test_the_hubs_lsun_config_is_the_lsun_architecture():
    found = architecture_from_config(CAT_256_CONFIG)
    church = OmegaConf.to_container(OmegaConf.load(CONF / "lsun_church.yaml").architecture)
    assert found == {k: v for k, v in church.items() if k != "dropout"}


@pytest.mark.parametrize("change, named", [
    ({"flip_sin_to_cos": True}, "flip_sin_to_cos"),
    ({"freq_shift": None}, "freq_shift"),  # left out: diffusers' default 0 is not the official half - 1 divisor
    ({"attention_head_dim": 64}, "attention_head_dim"),
    ({"norm_eps": 1e-5}, "norm_eps"),
    ({"downsample_padding": 1}, "downsample_padding"),
    ({"_class_name": "UNet2DConditionModel"}, "UNet2DConditionModel"),
])
def test_a_config_of_another_network_is_refused_by_name(change, named):
    config = {k: v for k, v in {**CAT_256_CONFIG, **change}.items() if v is not None or k == "attention_head_dim"}
    with pytest.raises(HarnessError, match=named):
        architecture_from_config(config)


def test_another_architecture_or_resolution_is_refused_before_reading_weights(cifar10, tmp_path):
    _, folder = cifar10
    with pytest.raises(HarnessError, match="use model=cifar10"):
        load_checkpoint(model_config("celeba", path=str(folder)))
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "sample_size": 64}))
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"never read")
    with pytest.raises(HarnessError, match=r"resolution 64 \(config: 32\)"):  # same shapes: only the config tells
        load_checkpoint(model_config("cifar10", path=str(tmp_path)))


class NotATensor:
    pass


def test_weights_that_are_not_plain_tensors_are_refused(cifar10, tmp_path):
    _, folder = cifar10
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    torch.save({"conv_in.weight": NotATensor()}, tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(HarnessError, match="cannot read"):  # weights_only=True: no object but tensors unpickled
        load_checkpoint(model_config("cifar10", path=str(tmp_path)))
    save_file({"conv_in.weight": torch.zeros(1), "extra.weight": torch.zeros(1)},
              tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(HarnessError, match="extra.weight"):
        load_checkpoint(model_config("cifar10", path=str(tmp_path)))


def test_a_folder_that_is_not_a_unet_folder_is_one_line(tmp_path):
    with pytest.raises(HarnessError) as err:
        load_checkpoint(model_config("cifar10", path=str(tmp_path)))
    assert "config.json" in str(err.value) and "\n" not in str(err.value)
    ok, text = availability("cifar10", path=str(tmp_path))  # what a dry run lists
    assert not ok and "config.json" in text


def test_a_hub_checkpoint_is_part_of_the_cell_identity_only_when_set(tmp_path):
    rehearsal.write_cifar10(tmp_path / 'data', 2)
    data = f"dataset.root={tmp_path / 'data'}"  # the reference set is part of the keys too
    plain = cells("dataset=cifar10", data)[0]
    hub = cells("dataset=cifar10", data, "model.checkpoint.hub=google/ddpm-cifar10-32")[0]
    assert "hub" not in plain._checkpoint()  # the keys of every earlier cell stay as they were
    assert hub.key != plain.key and hub.images_key != plain.images_key
    assert hub.params()["checkpoint"] == "google/ddpm-cifar10-32"


def test_a_folder_or_hub_checkpoint_is_named_by_its_weights_content(cifar10, offline_cache, tmp_path):
    """A diffusers folder, and a hub repo once in the cache, are named in the cell's identity by the sha256 of their
    weights file: other weights under the same folder or repo id make another cell."""
    _, folder = cifar10
    repo = "google/ddpm-cifar10-32"
    weights = folder / "diffusion_pytorch_model.safetensors"
    digest = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    assert checkpoint_identity(model_config("cifar10", path=str(folder))) == digest
    assert checkpoint_identity(model_config("cifar10", hub=repo)) == f"hub:{repo}"  # not downloaded: a dry run's key
    snapshot = fake_hub_cache(offline_cache, repo, folder)
    assert checkpoint_identity(model_config("cifar10", hub=repo)) == digest
    (snapshot / weights.name).unlink()
    (snapshot / weights.name).write_bytes(weights.read_bytes()[:-1] + b"\0")  # other weights, same repo id
    assert checkpoint_identity(model_config("cifar10", hub=repo)) not in (digest, f"hub:{repo}")


@pytest.mark.slow  # one Table 1 cell through the command line: sampling, Inception scoring, MLflow
@pytest.mark.rehearsal
def test_table1_cifar10_preset_runs_from_a_hub_checkpoint(tmp_path, monkeypatch):
    """The Table 1 CIFAR-10 preset (one cell of it) from google/ddpm-cifar10-32 as the hub cache holds it after a
    download, offline, on stand-in data and Inception weights (harness.rehearsal): the run finishes and records
    the weights file's sha256, the repo and commit, and how the hub model differs from the DDIM code's file."""
    from harness.rehearsal import INCEPTION_FILE, write_cifar10, write_inception_weights

    unet = hub_unet("cifar10", seed=5)
    unet.save_pretrained(tmp_path / "download")
    snapshot = fake_hub_cache(tmp_path / "hf-cache", "google/ddpm-cifar10-32", tmp_path / "download")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_cifar10(tmp_path / "data")
    weights = write_inception_weights(tmp_path / INCEPTION_FILE)
    harness(tmp_path, "sweeps=table1_cifar10", "N=4", "metrics.blocks=2", "S=2", "eta=0", "batch_size=4", "rehearsal=true",
            "device=cpu", "hydra.launcher.n_jobs=1", f"dataset.root={tmp_path / 'data'}",
            "model.checkpoint.hub=google/ddpm-cifar10-32", f"metrics.weights_path={weights}",
            "metrics.fd_dinov2=false", "metrics.cmmd=false")  # FD_DINOv2 and CMMD: the rehearsal's and test_vit_metrics' part
    found = runs(tmp_path)
    found = found[found["tags.kind"] == "cell"]
    assert len(found) == 1
    run = found.iloc[0]
    assert run["status"] == "FINISHED" and run["params.checkpoint"] == "google/ddpm-cifar10-32"
    sha = hashlib.sha256((snapshot / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    assert run["tags.checkpoint_sha256"] == sha
    assert run["tags.checkpoint_hub"] == f"google/ddpm-cifar10-32@{snapshot.name}"
    assert run["tags.checkpoint_weights"] == "unstated" and "790000" in run["tags.checkpoint_note"]
    assert run["tags.rehearsal"] == "true" and run["metrics.images_sampled"] == 4
    assert math.isfinite(run["metrics.fid"])
