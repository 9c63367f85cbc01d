"""What every job gets: its Cell, the device, its tracking run, and the model loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from harness.core import faults
from harness.core.names import Metric, Tag
from harness.core.progress import Progress
from harness.diffusion.analytic import exact_mixture
from harness.models.acceleration import prepare_model, warm_up
from harness.models.loading import load_checkpoint
from harness.run.cell import Cell
from harness.tracking.store import Run


@dataclass
class JobContext:
    cell: Cell
    device: torch.device
    run: Run
    label: str  # how this cell is named on the console ("cell 3/16 S=50 eta=0 digits/sample")
    parallel: bool = False  # other workers share the console: status lines instead of progress bars
    summary: str = ""
    headline: str | None = None  # the headline metric with its interval, for the console and the sweep summary
    index: int | None = None  # the task's number in its sweep (None for a single run)
    keep_open: bool = False  # a part that did its block but did not finish the cell: its run stays open (harness.run.parts)

    def load_model(self) -> torch.nn.Module:
        """The cell's network with its checkpoint, on the job's device, in eval mode, with the precision and compile
        mode applied; recorded. A compiled model is warmed up here, so its compile time is logged apart
        (``compile_seconds``) and not counted as sampling time."""
        cell = self.cell
        if cell.model.get("kind") == "analytic":
            self.run.set_tags({"model_kind": "analytic", "mixture": cell.model["mixture"]})
            return exact_mixture(cell.model["mixture"]).eps_model(cell.schedule)
        model, info = load_checkpoint(cell.model)
        self.run.set_tags({Tag.CHECKPOINT_SHA256: info.get("sha256"),
                           Tag.CHECKPOINT_PATH: Path(info["path"]).name if info.get("path") else None,
                           Tag.CHECKPOINT_WEIGHTS: info.get("weights"), Tag.CHECKPOINT_HUB: info.get("hub"),
                           Tag.CHECKPOINT_NOTE: info.get("note")})
        model, record = prepare_model(model.to(self.device).eval(), precision=cell.precision, compile=cell.compile,
                                      device=self.device)
        self.run.set_tags({f"acceleration.{k}": v for k, v in record.items()})
        if cell.compile != "none":
            x = torch.zeros((min(cell.batch_size, cell.n_images), *cell.image_shape), device=self.device)
            t = torch.full((1,), float(cell.tau[-1]), device=self.device)
            self.run.log_metrics({Metric.COMPILE_SECONDS: warm_up(model, x, t)})
        return model

    def progress(self, total: int, what: str, unit: str = "img") -> Progress:
        return Progress(total, f"{self.label}: {what}", unit, enabled=self.cell.progress, lines=self.parallel)

    def after_batch(self, batches_done: int) -> None:
        faults.point("batch_done", batches=batches_done, task=self.index)
