"""A small CNN classifier for the 8x8 digits: the feature extractor of the CPU default FID ("digits-cnn").

FID on the digits is computed in this network's penultimate features instead of Inception's (Inception is
far too slow on the CPU and its weights cannot be fetched offline), so every such FID names its extractor.

Train (about a minute on one core) and write the shipped weights and model card:

    python -m harness.models.digits_classifier [--out harness/assets/digits_classifier.pt] [--seed 0] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.helpers import vassert

from harness.core.cli import fail
from harness.core.errors import HarnessError
from harness.core.files import file_sha256, load_tensors
from harness.data import digits

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # harness/, which holds assets/
DEFAULT_WEIGHTS = PACKAGE_DIR / "assets" / "digits_classifier.pt"
FEATURE_DIM = 64
NUM_CLASSES = 10
ARCHITECTURE = (
    "uint8 [B,1,8,8] -> x/127.5-1 -> conv3x3(1->32,pad 1) ReLU -> conv3x3(32->64,pad 1) ReLU -> maxpool2 (4x4) "
    f"-> flatten 1024 -> linear(1024->{FEATURE_DIM}) ReLU = 'penultimate' -> linear({FEATURE_DIM}->10) = 'logits'"
)


class DigitsCNN(nn.Module):
    """Input: images in the 0..255 scale (uint8, or float in 0..255), [B, 1, 8, 8]."""

    def __init__(self, feature_dim: int = FEATURE_DIM, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, feature_dim)
        self.fc2 = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(penultimate features [B, feature_dim] after the ReLU, logits [B, 10])."""
        x = x.to(self.conv1.weight.dtype) / 127.5 - 1.0
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        h = F.relu(self.fc1(x.flatten(1)))
        return h, self.fc2(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def load_classifier(path: str | Path | None = None) -> DigitsCNN:
    """The classifier with the shipped weights (or those at ``path``), float32, eval mode."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise HarnessError(
            f"digits classifier weights {path} not found; retrain them with `python -m harness.models.digits_classifier` "
            "(or reinstall the harness)."
        )
    try:
        state = load_tensors(path)
        model = DigitsCNN()
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any unreadable/mismatched file is the same user problem
        raise HarnessError(
            f"cannot load digits classifier weights {path} ({type(exc).__name__}: {exc}); retrain them with "
            "`python -m harness.models.digits_classifier`."
        ) from None
    return model.float().eval().requires_grad_(False)


class DigitsCNNFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor: the digits classifier's penultimate features (and logits).

    Input: uint8 [B, 1, 8, 8] (or [B, 3, 8, 8], averaged over channels) in 0..255.
    Features: ``penultimate`` (64-d, after the ReLU; the default for FID/KID/PRC) and ``logits`` (10-d; ISC).
    """

    def __init__(
        self,
        name,
        features_list,
        feature_extractor_weights_path=None,
        feature_extractor_internal_dtype=None,
        **kwargs,
    ):
        super().__init__(name, features_list)
        vassert(
            feature_extractor_internal_dtype in ("float32", "float64", None),
            "Only 32 and 64 bit floats are supported for internal dtype of this feature extractor",
        )
        # torch_fidelity.helpers.text_to_dtype maps "float64" to float32 in 0.4.0, so resolve it here.
        self.feature_extractor_internal_dtype = torch.float64 if feature_extractor_internal_dtype == "float64" else torch.float32
        self.model = load_classifier(feature_extractor_weights_path)
        self.to(self.feature_extractor_internal_dtype)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and x.shape[1] in (1, 3), f"Input is not Bx1xHxW or Bx3xHxW: {tuple(x.shape)}")
        vassert(tuple(x.shape[2:]) == (8, 8), f"the {self.name} extractor takes 8x8 digits images, got {tuple(x.shape)}")
        x = x.to(self.feature_extractor_internal_dtype)
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        penultimate, logits = self.model.features(x)
        out = {"penultimate": penultimate, "logits": logits}
        # float32 like torch-fidelity's own extractors, float64 when asked for (the cache name then says so).
        return tuple(out[name].to(self.feature_extractor_internal_dtype) for name in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "penultimate", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift each image [B, C, H, W] by a random integer offset in [-max_shift, max_shift]^2, zero fill."""
    b, _, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # [B, 1, 1, W]
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(x.shape[1])[None, :, None, None]
    return padded[bi, ci, rows, cols]


@torch.no_grad()
def accuracy(model: DigitsCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += (model(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum().item()
    return correct / len(images)


def train(
    epochs: int = 30,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    shift: bool = True,
    log=print,
) -> tuple[DigitsCNN, dict]:
    """Train on the digits "train" split; returns the model (eval mode) and a history dict."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x = digits.images_uint8("train").float()
    y = digits.labels("train")
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = (len(x) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch))
    losses = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb = random_shift(x[idx], gen) if shift else x[idx]
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        losses.append(total / n)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    model.eval().requires_grad_(False)
    return model, {"epoch_losses": losses}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.models.digits_classifier", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file (a model card .json goes next to it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--no-shift", action="store_true", help="no random 1-pixel shift augmentation")
    args = ap.parse_args(argv)


    t0 = time.perf_counter()
    model, hist = train(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr, shift=not args.no_shift)
    seconds = time.perf_counter() - t0
    acc_test = accuracy(model, digits.images_uint8("test"), digits.labels("test"))
    acc_train = accuracy(model, digits.images_uint8("train"), digits.labels("train"))

    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out)
    cmd_args = sys.argv[1:] if argv is None else argv
    card = {
        "model": "digits-cnn (feature extractor for FID on the 8x8 digits; NOT Inception)",
        "command": " ".join(["python -m harness.models.digits_classifier", *map(shlex.quote, cmd_args)]),
        "architecture": ARCHITECTURE,
        "feature_dim": FEATURE_DIM,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights": "plain state dict, float32",
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"AdamW lr {args.lr} (one-cycle), weight decay 1e-4",
        "augmentation": "none" if args.no_shift else "random shifts of up to 1 pixel in x and y (zero fill)",
        "train_data": "scikit-learn digits, split 'train' (1,500 images)",
        "heldout_accuracy": acc_test,
        "heldout_images": len(digits.labels("test")),
        "train_accuracy": acc_train,
        "final_train_loss": hist["epoch_losses"][-1],
        "train_seconds": round(seconds, 2),
        "data_sha256": digits.data_hash(),
        "sha256": file_sha256(out),
        "torch": torch.__version__,
    }
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    print(f"held-out accuracy {acc_test:.4f}, train accuracy {acc_train:.4f}, {seconds:.1f} s; wrote {out} and {card_path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as exc:
        fail(exc)
