"""Checkpoint reading, strict loading and verified downloads (local HTTP server / file:// only)."""

import hashlib
import http.server
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from clitools import local_server
from harness.models import checkpoints
from harness.models.checkpoints import CheckpointEntry, checkpoint_dir, entry_for, resolve
from harness.core.files import cache_dir, download, file_sha256
from harness.models.loading import load_checkpoint, load_model, read_state_dict
from harness.core.errors import HarnessError
from harness.diffusion.unet import build_unet

CONF = Path(__file__).resolve().parent.parent / "conf" / "model"
DIGITS = OmegaConf.load(CONF / "digits.yaml")


def digits_model(seed, **changes):
    torch.manual_seed(seed)
    arch = {**OmegaConf.to_container(DIGITS.architecture), **changes}
    return build_unet(arch).eval()


def model_cfg(path, name="digits", ema=True, arch=None):
    return {"name": name, "architecture": arch or DIGITS.architecture,
            "checkpoint": {"name": None, "ema": ema, "path": str(path)}}


def outputs(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 8, 8, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([0.0, 10.0, 500.0, 999.0]))


def test_plain_state_dict_round_trip(tmp_path):
    source = digits_model(0)
    path = tmp_path / "plain.pt"
    torch.save(source.state_dict(), path)
    model, info = load_checkpoint(model_cfg(path))
    assert not model.training
    assert torch.equal(outputs(model), outputs(source))
    assert info["format"] == "state_dict" and info["path"] == str(path)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)


def test_official_list_format(tmp_path):
    raw, ema = digits_model(0), digits_model(1)
    params = list(raw.parameters())
    optimizer = {  # what torch.optim.Adam(...).state_dict() holds (built by hand: creating Adam is slow)
        "state": {i: {"step": torch.tensor(1234.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                  for i, p in enumerate(params)},
        "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                          "params": list(range(len(params)))}],
    }
    path = tmp_path / "ckpt.pth"
    states = [{f"module.{k}": v for k, v in raw.state_dict().items()}, optimizer, 3, 1234, ema.state_dict()]
    torch.save(states, path)
    assert not torch.equal(outputs(raw), outputs(ema))

    model, info = load_checkpoint(model_cfg(path, ema=True))
    assert torch.equal(outputs(model), outputs(ema))
    assert (info["format"], info["weights"]) == ("list", "ema")

    model, info = load_checkpoint(model_cfg(path, ema=False))
    assert torch.equal(outputs(model), outputs(raw))
    assert (info["format"], info["weights"]) == ("list", "raw")

    torch.save(states[:4], path)  # no EMA entry
    state, info = read_state_dict(path, ema=False)
    assert set(state) == set(raw.state_dict()) and info["weights"] == "raw"
    with pytest.raises(HarnessError, match="without EMA"):
        read_state_dict(path, ema=True)


def test_wrong_configuration_is_a_clear_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(digits_model(0, ch=16, num_groups=4).state_dict(), path)
    with pytest.raises(HarnessError) as err:
        load_checkpoint(model_cfg(path))
    msg = str(err.value)
    assert str(path) in msg and "'digits'" in msg
    assert "shape mismatches" in msg and "conv_in.weight" in msg

    # A digits checkpoint loaded under another config: the error suggests model=digits.
    path = tmp_path / "digits.pt"
    torch.save(digits_model(0).state_dict(), path)
    other = {**OmegaConf.to_container(DIGITS.architecture), "ch_mult": [1, 2, 2]}
    with pytest.raises(HarnessError) as err:
        load_checkpoint(model_cfg(path, name="tiny3", arch=other))
    msg = str(err.value)
    assert str(path) in msg and "'tiny3'" in msg and "model=digits" in msg and "missing keys" in msg


@pytest.mark.parametrize("content", [b"", b"not a checkpoint" * 100, "truncated"])
def test_corrupt_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "truncated":
        torch.save(digits_model(0).state_dict(), path)
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.write_bytes(content + torch.randint(0, 256, (512,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(HarnessError, match="cannot read checkpoint") as err:
        load_model(digits_model(0), path)
    assert str(path) in str(err.value)


def test_unrecognised_contents(tmp_path):
    path = tmp_path / "dict.pt"
    torch.save({"model": digits_model(0).state_dict(), "step": 3}, path)
    with pytest.raises(HarnessError, match="neither a state dict"):
        read_state_dict(path)


def test_registry():
    assert entry_for("cifar10").name == "ema_cifar10"
    assert entry_for("cifar10", ema=False).name == "cifar10"
    assert entry_for("lsun_church").md5 == "fdc68a23938c2397caba4a260bc2445f"
    assert entry_for("lsun_bedroom").filename == "ema_diffusion_lsun_bedroom_model/model-2388000.ckpt"
    assert entry_for("celeba").url is None and entry_for("celeba", ema=False).name == "celeba"
    digits = entry_for("digits")
    assert digits.packaged and digits.sha256 == file_sha256(resolve("digits"))  # the shipped file is verified
    with pytest.raises(HarnessError, match="unknown checkpoint"):
        entry_for("imagenet")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DDIM_HARNESS_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and checkpoint_dir() == tmp_path / "c" / "checkpoints"
    monkeypatch.delenv("DDIM_HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "ddim-harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "ddim-harness"


def test_celeba_without_path_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DDIM_HARNESS_CACHE", str(tmp_path))
    with pytest.raises(HarnessError) as err:
        resolve("celeba")
    assert "1R_H-fJYXSH79wfSKs9D-fuKQVan5L-GR" in str(err.value)
    assert "model.checkpoint.path=" in str(err.value)


# --- downloads against a local server ---------------------------------------------------------

PAYLOAD = bytes(range(256)) * 400  # 100 kB


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAYLOAD
        self.send_response(200)
        # /truncated announces more bytes than it sends, then closes the connection.
        self.send_header("Content-Length", str(len(body) + (1000 if self.path == "/truncated" else 0)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    with local_server(_Handler) as url:
        yield url


@pytest.fixture
def cache(private_caches, tmp_path):
    return tmp_path / "cache"


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_download_and_resolve_into_cache(server, cache, monkeypatch):
    entry = CheckpointEntry(name="test", filename="test_model/model-1.ckpt", url=f"{server}/file", md5=MD5)
    monkeypatch.setitem(checkpoints.REGISTRY, "test", entry)
    path = resolve("test", ema=True)
    assert path == cache / "checkpoints" / "test_model" / "model-1.ckpt"
    assert path.read_bytes() == PAYLOAD
    assert [p.name for p in path.parent.iterdir()] == ["model-1.ckpt"]

    path.write_bytes(b"corrupt")  # a corrupt cached file is replaced
    assert resolve("test").read_bytes() == PAYLOAD


def test_download_wrong_md5_leaves_nothing(server, cache):
    dest = cache / "checkpoints" / "x.ckpt"
    with pytest.raises(HarnessError, match="wrong checksum") as err:
        download(f"{server}/file", dest, md5="0" * 32)
    assert f"{server}/file" in str(err.value) and MD5 in str(err.value)
    assert list(dest.parent.iterdir()) == []


def test_download_truncated_leaves_nothing(server, cache):
    dest = cache / "checkpoints" / "x.ckpt"
    with pytest.raises(HarnessError, match="truncated"):
        download(f"{server}/truncated", dest, md5=MD5)
    assert list(dest.parent.iterdir()) == []


def test_download_network_error_leaves_nothing(cache):
    dest = cache / "checkpoints" / "x.ckpt"
    with pytest.raises(HarnessError, match="failed"):
        download("http://127.0.0.1:9/nothing", dest, timeout=5)  # port 9 (discard): connection refused
    assert list(dest.parent.iterdir()) == []


def test_download_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "dest.bin"
    download(src.as_uri(), dest, md5=MD5, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(HarnessError, match="sha256"):
        download(src.as_uri(), tmp_path / "out" / "other.bin", sha256="f" * 64)
    assert [p.name for p in dest.parent.iterdir()] == ["dest.bin"]
