"""python -m harness.models.export: turn a training ``ckpt.pth`` into the shipped EMA weights and their model card.

    python -m harness.models.export outputs/train/digits/ckpt.pth harness/assets/digits_unet.pt --command "python -m harness.models.train"

Writes the EMA weights (index -1 of the official list) as a plain float32 state dict, and beside it ``<name>.json``:
the training command, the resolved training config, steps, the final logged loss, the data hash and the weights' sha256.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from harness.core.files import file_sha256
from harness.data import digits


def export(ckpt: Path, out: Path, command: str) -> dict:
    states = torch.load(ckpt, map_location="cpu", weights_only=True)
    ema = {k: v.float().contiguous() for k, v in states[-1].items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ema, out)
    run_dir = ckpt.parent
    history = json.loads((run_dir / "history.json").read_text())
    train_cfg = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True)

    card = {
        "model": train_cfg["model"]["name"],
        "weights": "EMA (index -1 of the training ckpt.pth), float32 state dict",
        "command": command,
        "config": train_cfg,
        "steps": int(states[3]),
        "final_loss": history[-1]["loss"],
        "loss_history": [(h["step"], round(h["loss"], 5)) for h in history],
        "train_seconds": history[-1]["seconds"],
        "parameters": sum(v.numel() for v in ema.values()),
        "data": f"scikit-learn digits, split {train_cfg['dataset']['train_split']!r}",
        "data_sha256": digits.data_hash(),
        "sha256": file_sha256(out),
        "torch": torch.__version__,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--command", default="python -m harness.models.train", help="the command that trained it, for the card")
    args = parser.parse_args()
    card = export(args.checkpoint, args.out, args.command)
    print(f"wrote {args.out} ({card['parameters']} parameters, {card['steps']} steps, final loss {card['final_loss']:.4f})")
    print(f"sha256 {card['sha256']}")


if __name__ == "__main__":
    main()
