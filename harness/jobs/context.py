"""What every job gets: its Cell, the device, its tracking run, and the model loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..cell import Cell
from ..names import Tag
from ..progress import Progress
from ..tracking import Run


class Interrupted(RuntimeError):
    """Raised by the test hook ``debug.fail_after_batches`` to simulate a job killed mid-sampling."""


@dataclass
class JobContext:
    cell: Cell
    device: torch.device
    run: Run
    label: str  # how this cell is named on the console ("cell 3/16 S=50 eta=0 digits/sample")
    parallel: bool = False  # other workers share the console: status lines instead of progress bars
    summary: str = ""
    headline: str | None = None  # the headline metric with its interval, for the console and the sweep summary

    def load_model(self) -> torch.nn.Module:
        """The cell's network with its checkpoint, on the job's device, in eval mode, precision applied; recorded."""
        from ..model_loading import load_checkpoint
        from ..runtime import apply_precision

        model, info = load_checkpoint(self.cell.model)
        self.run.set_tags({Tag.CHECKPOINT_SHA256: info.get("sha256"),
                           Tag.CHECKPOINT_PATH: Path(info["path"]).name if info.get("path") else None,
                           Tag.CHECKPOINT_WEIGHTS: info.get("weights")})
        return apply_precision(model.to(self.device).eval(), self.cell.precision, self.device)

    def progress(self, total: int, what: str, unit: str = "img") -> Progress:
        return Progress(total, f"{self.label}: {what}", unit, enabled=self.cell.progress, lines=self.parallel)

    def after_batch(self, batches_done: int) -> None:
        limit = self.cell.fail_after_batches
        if limit is not None and batches_done >= limit:
            raise Interrupted(f"debug.fail_after_batches={limit}: stopping after {batches_done} batches")
