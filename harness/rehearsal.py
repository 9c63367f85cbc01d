"""A rehearsal of the paper's presets on stand-in files: each preset of Tables 1-3, Figure 4 and the sampler grid runs
through the command line (``python -m harness sweeps=<preset>``) at tiny N and S on the CPU, then the report, with
nothing of the harness replaced. Only the files are stand-ins, made here in the exact formats of the real ones, with
random weights and random images (so the scores mean nothing; what is rehearsed is every code path a GPU run takes):

* the official checkpoints: pesser/pytorch_diffusion's plain state dicts (CIFAR-10, LSUN bedroom and church, the
  files the official DDIM code downloads) and the DDIM authors' CelebA ``ckpt.pth``, the training list
  ``[model_state ("module." keys), optimizer_state, epoch, step, ema_state]``, for the architectures of conf/model/;
* torch-fidelity's Inception weights file (a plain state dict of its ``FeatureExtractorInceptionV3``), given as
  ``metrics.weights_path``;
* FD_DINOv2's and CMMD's networks: timm's DINOv2 ViT safetensors and open_clip's CLIP safetensors, of the real
  classes at two blocks of width 64, given as ``metrics.dinov2`` / ``metrics.clip`` weights and architecture;
* CIFAR-10's ``cifar-10-batches-py`` pickles, CelebA's ``img_align_celeba`` JPEGs (178x218, read through the official
  crop) with ``list_eval_partition.txt``, and LSUN's lmdb folders of webp images.

The U-Net stand-ins hold every float tensor as a view of one random storage, which ``torch.save`` writes once: the
LSUN file is about 10 MB instead of 455 MB, and ``torch.load`` gives the same state dict layout as the real file.

Its runs carry ``rehearsal=true`` (``Tag.REHEARSAL``): the report leaves them out unless asked
(``python -m harness.report --rehearsal``), and then says REHEARSAL on every page. Run it with
``python -m harness.rehearsal`` (everything goes under ``outputs/rehearsal/``; ``--preset NAME`` for some presets).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pickle
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.app import main as harness_main
from harness.core import config
from harness.diffusion.unet import build_unet
from harness.models.checkpoints import REGISTRY
from harness.report.cli import main as report_main

DEFAULT_OUT = Path("outputs") / "rehearsal"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file name (features.WEIGHTS_URLS)
SCALE = 0.05  # the stand-in weights are uniform on [-SCALE, SCALE]: finite activations through every block

# Each preset's overrides: the smallest N, S and batch that still take every code path of the preset's job (metrics
# need N >= 2 and N > metrics.prc_neighborhood). Each scored cell costs about 5 s of CPU in the FID alone (the
# eigenvalues of a 2048 x 2048 product, whatever N), so Table 1 keeps the three processes eta=0 (deterministic),
# eta=1 (stochastic) and sigma-hat, and the sampler grid its eight samplers at one NFE; the 256x256 LSUN models
# (113M parameters: seconds of CPU per image and step) run cells of one step.
# The paper's datasets score each repeat in blocks (metrics.blocks=10 at N=50,000: harness.metrics.blocks); here N=4
# in 2 blocks of 2 (the least that gives a jackknife), so every Table 1 and 3 number has an interval; CIFAR-10's three
# processes and LSUN bedroom's two give the claims' verdicts (the 256x256 images cost most of the CPU: church
# and CelebA keep one cell each; the sampler grid's cells are blocked too, its DDIM cell being a Table 1 number).
SMALL = ["N=4", "S=2", "batch_size=4", "metrics.blocks=2"]
ONE_STEP_256 = ["S=1", "N=4", "batch_size=2", "metrics.prc_neighborhood=1", "metrics.blocks=2"]
PRESETS: dict[str, list[str]] = {
    "table1_cifar10": [*SMALL, "eta=0,1,hat"],
    "table1_celeba": [*SMALL, "eta=0"],
    "table2_cifar10": ["N=2", "S=2", "batch_size=2"],
    "table3_bedroom": [*ONE_STEP_256, "eta=0,1"],
    "table3_church": [*ONE_STEP_256, "eta=0"],
    "figure4_cifar10": ["S=2", "batch_size=2", "job.repeats=1"],
    "figure4_bedroom": ["S=1", "batch_size=1", "job.warmup=0", "job.repeats=1"],
    "samplers_cifar10": ["nfe=5", "N=4", "batch_size=4", "metrics.blocks=2"],  # its DDIM cell is in Table 1 too
}
PRESET_DATASET = {"table1_cifar10": "cifar10", "table1_celeba": "celeba", "table2_cifar10": "cifar10",
                  "table3_bedroom": "lsun_bedroom", "table3_church": "lsun_church", "figure4_cifar10": "cifar10",
                  "figure4_bedroom": "lsun_bedroom", "samplers_cifar10": "cifar10"}


# ------------------------------------------------------------------------------------------------ stand-in weights


def _random_views(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Float tensors of the given shapes, all views of one uniform random storage (saved once by torch.save)."""
    largest = max((int(np.prod(s)) for s in shapes.values()), default=1)
    base = torch.empty(largest).uniform_(-SCALE, SCALE, generator=torch.Generator().manual_seed(seed))
    return {k: base[: int(np.prod(s))].view(s) for k, s in shapes.items()}


def unet_state(model_name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict of conf/model/<model_name>.yaml's U-Net, with the official key names."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = build_unet(config.load("model", model_name).architecture)
    return _random_views({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed)


def write_official_checkpoint(model_name: str, path: Path) -> Path:
    """pesser/pytorch_diffusion's format (CIFAR-10, LSUN): a plain state dict, saved by torch.save."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(unet_state(model_name), path)
    return path


def write_celeba_checkpoint(path: Path, model_name: str = "celeba") -> Path:
    """The DDIM authors' ``ckpt.pth``: ``[model_state, optimizer_state, epoch, step, ema_state]``, the model's keys
    prefixed ``module.`` (it was trained in ``nn.DataParallel``), the EMA's without (its helper unwraps the module)."""
    ema = unet_state(model_name, seed=1)
    raw = {f"module.{k}": v for k, v in unet_state(model_name, seed=2).items()}
    optimizer = {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                                "amsgrad": False, "params": list(range(len(raw)))}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save([raw, optimizer, 1, 1, ema], path)
    return path


def write_inception_weights(path: Path) -> Path:
    """torch-fidelity's Inception weights file: the state dict of its ``FeatureExtractorInceptionV3`` (PyTorch's
    default initialisation; its BatchNorm statistics 0 and 1)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # lazy: torch-fidelity is heavy: only when its networks are needed

    class Unloaded(FeatureExtractorInceptionV3):  # its constructor loads a weights file: here, none yet
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    path.parent.mkdir(parents=True, exist_ok=True)
    empty = path.with_suffix(".empty")
    torch.save({}, empty)
    try:
        module = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        empty.unlink()
    generator = torch.Generator().manual_seed(0)
    state = module.state_dict()
    for key, value in state.items():  # He initialisation: features that vary with the image through all 94 layers
        if key.endswith("conv.weight") or key == "fc.weight":
            fan_in = value[0].numel()
            value.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
    torch.save(state, path)
    return path


# DINOv2's and CLIP's stand-ins: the classes and file formats of the real ones, two blocks of width 64 (the real
# ViT-L: 24 of 1024), so the rehearsal scores FD_DINOv2 and CMMD in about a second.
DINOV2_STANDIN = {"depth": 2, "embed_dim": 64, "num_heads": 2}
CLIP_STANDIN = {"embed_dim": 32, "width": 64, "layers": 2, "head_width": 32}
DINOV2_FILE, CLIP_FILE = "dinov2-standin.safetensors", "clip-standin.open_clip.safetensors"


def random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state dict with every float tensor random: N(0, 0.05^2), layer norms' scales and layer scales
    around 1, so every block changes the features."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        noise = torch.randn(value.shape, generator=generator) * 0.05
        around_one = key.endswith(".gamma") or (value.dim() == 1 and key.endswith("weight") and ("norm" in key or "ln_" in key))
        state[key] = (1 + noise if around_one else noise).to(value.dtype).contiguous()
    return state


def write_dinov2_weights(path: Path, architecture: dict | None = None, seed: int = 0) -> Path:
    """timm's hub file of DINOv2 (``vit_large_patch14_dinov2.lvd142m/model.safetensors``): the state dict of timm's
    ViT built at 518x518 (37x37 position embeddings), in safetensors; ``architecture`` overrides timm's (the stand-in's)."""
    import timm  # lazy: the metrics extra: only FD_DINOv2 needs it
    from safetensors.torch import save_file  # lazy: the metrics extra: only FD_DINOv2 needs it

    model = timm.create_model("vit_large_patch14_dinov2", pretrained=False, num_classes=0, img_size=518,
                              **(DINOV2_STANDIN if architecture is None else architecture))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(random_state(model, seed), str(path))
    return path


def write_clip_weights(path: Path, architecture: dict | None = None, seed: int = 0) -> Path:
    """open_clip's file of OpenAI's CLIP ViT-L/14-336 (``open_clip_model.safetensors``): the CLIP model's state dict,
    its image tower under ``visual.`` (here with the text tower's ``logit_scale`` only: the harness reads the image
    tower alone); ``architecture`` overrides the image tower's config (the stand-in's)."""
    from safetensors.torch import save_file  # lazy: the metrics extra: only CMMD needs it

    from harness.metrics.clip import build  # lazy: brings open_clip

    spec = {"arch": "ViT-L-14-336", "image_size": 336, "architecture": CLIP_STANDIN if architecture is None else architecture}
    state = {f"visual.{k}": v for k, v in random_state(build(spec), seed).items()}
    state["logit_scale"] = torch.tensor(4.6052)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


# ------------------------------------------------------------------------------------------------ stand-in data


def _random_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def write_cifar10(root: Path, per_batch: int = 2, n_test: int = 4) -> Path:
    """``cifar-10-batches-py``: five training batches, the test batch and ``batches.meta``, pickled dicts with the
    original's keys (protocol 2; the original files are Python 2 pickles read with encoding="latin1")."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(label: str, n: int, stem: str) -> bytes:
        entry = {"batch_label": label, "labels": [int(v) for v in rng.integers(0, 10, n)],
                 "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "filenames": [f"{stem}_{k}.png" for k in range(n)]}
        return pickle.dumps(entry, protocol=2)

    for i in range(1, 6):
        (d / f"data_batch_{i}").write_bytes(batch(f"training batch {i} of 5", per_batch, f"train{i}"))
    (d / "test_batch").write_bytes(batch("testing batch 1 of 1", n_test, "test"))
    meta = {"num_cases_per_batch": per_batch, "num_vis": 3072,
            "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return d


def write_celeba(root: Path, partition: tuple[int, ...] = (0, 0, 0, 0, 0, 1, 2, 2)) -> Path:
    """``celeba/img_align_celeba/000001.jpg ...`` (178x218 JPEGs, as aligned CelebA) and ``list_eval_partition.txt``
    (``<image> <0 train | 1 valid | 2 test>``)."""
    d = root / "celeba"
    (d / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, split in enumerate(partition, start=1):
        name = f"{k:06d}.jpg"
        _random_image(178, 218, k).save(d / "img_align_celeba" / name, format="JPEG", quality=95)
        lines.append(f"{name} {split}\n")
    (d / "list_eval_partition.txt").write_text("".join(lines))
    return d


def write_lsun(root: Path, category: str, n_train: int = 3, n_val: int = 2) -> list[Path]:
    """fyu/lsun's ``{category}_{train,val}_lmdb/``: lmdb folders whose keys are hex image hashes and values webp images
    (shorter side 256, as LSUN's)."""
    import lmdb  # reason: optional dependency (the lsun extra), as for reading LSUN

    folders = []
    for split, n in (("train", n_train), ("val", n_val)):
        path = root / f"{category}_{split}_lmdb"
        env = lmdb.open(str(path), map_size=1 << 26)
        with env.begin(write=True) as txn:
            for k in range(n):
                buf = io.BytesIO()
                size = (256 + 32 * k, 256) if k % 2 == 0 else (256, 256 + 48 * k)
                _random_image(*size, seed=1000 * len(split) + k).save(buf, format="WEBP", quality=80)
                txn.put(hashlib.sha1(f"{category}-{split}-{k}".encode()).hexdigest().encode(), buf.getvalue())
        env.close()
        folders.append(path)
    return folders


# ------------------------------------------------------------------------------------------------ the rehearsal


@dataclass(frozen=True)
class StandIns:
    """Where the stand-in files are: the data root, each model's checkpoint file, the Inception weights."""

    root: Path
    data: Path
    checkpoints: dict[str, Path]
    inception: Path
    dinov2: Path | None = None  # None: the metrics extra is not installed (FD_DINOV2 and CMMD are then left out)
    clip: Path | None = None


def make_standins(out: Path, datasets: set[str] | None = None) -> StandIns:
    """Every stand-in file the presets of ``datasets`` (default: all) read, under ``out``."""
    datasets = set(PRESET_DATASET.values()) if datasets is None else datasets
    data, ckpts = out / "data", out / "checkpoints"
    checkpoints = {}
    if "cifar10" in datasets:
        write_cifar10(data)
        checkpoints["cifar10"] = write_official_checkpoint("cifar10", ckpts / REGISTRY["ema_cifar10"].filename)
    if "celeba" in datasets:
        write_celeba(data)
        checkpoints["celeba"] = write_celeba_checkpoint(ckpts / REGISTRY["celeba"].filename)
    for name, category in (("lsun_bedroom", "bedroom"), ("lsun_church", "church_outdoor")):
        if name in datasets:
            write_lsun(data, category)
            checkpoints[name] = write_official_checkpoint(name, ckpts / REGISTRY[f"ema_{name}"].filename)
    try:
        networks = {"dinov2": write_dinov2_weights(out / DINOV2_FILE), "clip": write_clip_weights(out / CLIP_FILE)}
    except ImportError:  # no timm / open_clip: the presets run without FD_DINOv2 and CMMD (preset_arguments)
        networks = {}
    return StandIns(out, data, checkpoints, write_inception_weights(out / INCEPTION_FILE), **networks)


def network_arguments(files: StandIns) -> list[str]:
    """FD_DINOv2's and CMMD's stand-in weights and architectures, or both metrics off without the metrics extra."""
    if files.dinov2 is None or files.clip is None:
        return ["metrics.fd_dinov2=false", "metrics.cmmd=false"]
    return [f"metrics.dinov2.weights_path={files.dinov2}", f"metrics.clip.weights_path={files.clip}",
            *(f"metrics.dinov2.architecture.{k}={v}" for k, v in DINOV2_STANDIN.items()),
            *(f"metrics.clip.architecture.{k}={v}" for k, v in CLIP_STANDIN.items())]


def preset_arguments(preset: str, files: StandIns) -> list[str]:
    """The arguments of ``python -m harness sweeps=<preset>`` with the preset's tiny sizes and the stand-ins. The
    cells run in this process (Hydra's basic launcher: no worker process to start, which costs as much CPU as a
    small cell), except for the presets that set their launcher (Figure 4's one timing job at a time), which keep
    the default launcher and its worker process."""
    dataset = PRESET_DATASET[preset]
    own_launcher = "n_jobs" in (config.load("sweeps", preset).get("hydra", {}).get("launcher") or {})
    return [f"sweeps={preset}", *PRESETS[preset], "rehearsal=true", "device=cpu", "progress=false",
            *([] if own_launcher else ["hydra/launcher=basic"]), f"dataset.root={files.data}",
            f"model.checkpoint.path={files.checkpoints[dataset]}",
            f"metrics.weights_path={files.inception}", *network_arguments(files), f"tracking.uri=sqlite:///{files.root / 'mlflow.db'}",
            f"output_root={files.root / 'outputs'}"]


@dataclass
class Measured:
    name: str
    returncode: int
    seconds: float  # wall time
    cpu_seconds: float  # user + system time of this process and of the worker processes it waited for
    peak_rss_mb: float  # the largest resident set so far of this process or a worker (presets run one after another)


def _cpu() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(r.ru_utime + r.ru_stime for r in usage)


def _peak_mb() -> float:
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def measure(name: str, argv: list[str], entry) -> Measured:
    """``entry()`` with ``sys.argv = argv`` in this process, as its command line would run it; its exit status,
    wall and CPU time and the peak memory (ru_maxrss) so far."""
    from hydra.core.global_hydra import GlobalHydra  # lazy: Hydra's internals: only when a sweep or job runs

    saved, sys.argv = sys.argv, argv
    start, cpu = time.perf_counter(), _cpu()
    try:
        code = entry()
        code = 0 if code is None else int(code)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    return Measured(name, code, time.perf_counter() - start, _cpu() - cpu, _peak_mb())


def rehearse(out: Path, presets: list[str] | None = None, report: bool = True, echo=print) -> list[Measured]:
    """Make the stand-ins, run each preset, then the report (``--rehearsal``); return each command's measurements."""
    presets = list(PRESETS) if presets is None else presets
    unknown = sorted(set(presets) - set(PRESETS))
    if unknown:
        raise SystemExit(f"error: unknown preset(s) {', '.join(unknown)}; known: {', '.join(PRESETS)}")
    out = out.resolve()
    for old in (out / name for name in ("mlflow.db", "mlartifacts", "outputs", "cache", "report")):  # start afresh
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    files = make_standins(out, {PRESET_DATASET[p] for p in presets})
    echo(f"stand-in files made in {time.perf_counter() - start:.1f} s under {out}")
    os.environ["DDIM_HARNESS_CACHE"] = str(out / "cache")  # reference features and verified weights of the stand-ins
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    results = []
    cwd = Path.cwd()
    os.chdir(out)  # MLflow's artifacts of an SQLite store go to ./mlartifacts: under out
    try:
        for preset in presets:
            m = measure(preset, ["python -m harness", *preset_arguments(preset, files)], harness_main)
            results.append(m)
            echo(f"{preset}: exit {m.returncode}, {m.seconds:.1f} s ({m.cpu_seconds:.1f} s CPU), peak {m.peak_rss_mb:.0f} MB")
        if report:
            args = ["--rehearsal", "--tracking-uri", f"sqlite:///{out / 'mlflow.db'}", "--out", str(out / "report")]
            m = measure("report", ["python -m harness.report", *args], lambda: report_main(args))
            results.append(m)
            echo(f"report: exit {m.returncode}, {m.seconds:.1f} s ({m.cpu_seconds:.1f} s CPU) -> {out / 'report'}")
    finally:
        os.chdir(cwd)
    total = time.perf_counter() - start
    (out / "rehearsal.json").write_text(json.dumps(
        {"seconds": total, "cpu_seconds": _cpu(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
         "commands": [vars(m) for m in results]}, indent=1))
    echo(f"rehearsal done in {total:.1f} s: {sum(m.returncode == 0 for m in results)} of {len(results)} commands passed")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.rehearsal", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for everything it writes (default {DEFAULT_OUT})")
    p.add_argument("--preset", nargs="+", action="extend", choices=list(PRESETS), default=None, metavar="NAME",
                   help=f"only these presets (default: all: {', '.join(PRESETS)})")
    p.add_argument("--no-report", action="store_true", help="skip python -m harness.report --rehearsal at the end")
    args = p.parse_args(argv)
    results = rehearse(args.out, args.preset, report=not args.no_report)
    return 0 if all(m.returncode == 0 for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
