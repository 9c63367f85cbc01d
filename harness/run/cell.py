"""One cell, ``Cell`` (job, dataset, model, sampler, S, eta, N, repeats, seed, ...), built and validated once from the
Hydra config by ``Cell.from_config``; everything downstream trusts it. Its keys name its inputs by content
(docs/architecture.md). Its methods import torch's modules lazily: the sweeper's start-up imports this one."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.core.errors import HarnessError
from harness.core.names import Param
from harness.diffusion.eta import SIGMA_HAT, Eta, eta_label, parse_eta
from harness.diffusion.trajectory import timesteps
from harness.run import registry

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # names that end up in file paths and MLflow names


def checked_int(name: str, value: Any, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HarnessError(f"{name} must be an integer >= {minimum}, got {value!r}. {fix}")
    return value


def _safe_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise HarnessError(
            f"{what} {value!r} is not a plain name (letters, digits, '_', '-', '.'; it names files and runs): rename it."
        )
    return value


def _frozen(node: Any) -> Mapping:
    """A resolved, read-only plain-dict copy of a config section."""
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    return MappingProxyType(data)


def cell_hash(blob: Mapping) -> str:
    """The first 16 hex digits of the SHA-256 of ``blob`` as sorted JSON: the keys of a cell and of its environment."""
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Tracking:
    uri: str | None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db (resolved by harness.tracking.store)
    experiment: str


@dataclass(frozen=True)
class Cell:
    """One validated cell. ``dataset``, ``model``, ``metrics``, ``job_options`` and ``diffusion`` are read-only dicts
    of their config sections, resolved."""

    job: str
    dataset: Mapping
    model: Mapping
    metrics: Mapping
    job_options: Mapping
    diffusion: Mapping
    sampler: str
    S: int
    eta: Eta
    trajectory: str
    tau: tuple[int, ...]
    N: int
    repeats: int
    seed: int
    precision: str
    noise: str
    compile: str
    # how it runs, not what it computes: never part of a key
    batch_size: int
    device: str
    threads: int | None
    progress: bool
    verbose: bool
    force: bool
    dry_run: bool
    output_root: Path
    tracking: Tracking
    parts: int = 1  # jobs the cell is split into (harness.run.parts); never part of a key
    part: int | None = None  # which of them this job is (0..parts-1); None: the whole cell
    rehearsal: bool = False  # stand-in files (harness.rehearsal): its runs are tagged, its data not checksummed
    config: Mapping = field(default_factory=dict, compare=False, repr=False)  # the whole resolved config, for the record

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "Cell":
        """Parse and check every setting of one job's config (cheap: no model, no data); HarnessError names the fix."""
        job = _safe_name("job.name", cfg.job.name)
        spec = registry.job(job, cfg.job.get("module"))
        dataset, model = _frozen(cfg.dataset), _frozen(cfg.model)
        _safe_name("dataset.name", dataset.get("name"))
        _safe_name("model.name", model.get("name"))
        diffusion = _frozen(cfg.diffusion)
        T = checked_int("diffusion.T", diffusion.get("T"), 1, "Set diffusion.T=<number of training steps> (1000 in the paper).")
        from harness.diffusion.samplers import get_sampler, steps_for_nfe

        sampler_info = get_sampler(cfg.get("sampler", "ddim"))
        sampler = sampler_info.name
        if spec.sampler is not None and sampler != spec.sampler:
            raise HarnessError(f"job={job} runs only sampler={spec.sampler}; it takes no sampler={sampler}: drop the "
                               "sampler override.")
        eta = parse_eta(cfg.eta)
        sampler_info.check_eta(eta)  # a deterministic sampler takes no eta
        target = cfg.get("nfe")
        S = cfg.S if target is None else steps_for_nfe(sampler, target, cfg.trajectory, T)
        tau = tuple(timesteps(cfg.trajectory, S, T))  # a known trajectory and 1 <= S <= T
        N = checked_int("N", cfg.N, 2, "Metrics need at least 2 images per repeat (the paper used 50,000).")
        repeats = checked_int("repeats", cfg.get("repeats", 1), 1, "Set repeats=<number of disjoint image ranges scored>.")
        seed = checked_int("seed", cfg.seed, 0, "Set seed=<non-negative integer>.")
        batch_size = checked_int("batch_size", cfg.batch_size, 1, "Set batch_size=<images per network call>.")
        threads = cfg.get("threads")
        if threads is not None:
            checked_int("threads", threads, 1, "Set threads=<torch CPU threads per job>, or threads=null for cores / jobs.")
        from harness.core.runtime import check_precision
        from harness.diffusion.noise import check_noise_scheme
        from harness.models.acceleration import check_compile_mode

        precision = check_precision(cfg.precision)
        noise, compile_mode = check_noise_scheme(cfg.noise), check_compile_mode(cfg.compile)
        arch = model.get("architecture") or {}
        if arch and (int(arch["in_channels"]), int(arch["resolution"])) != (int(dataset["channels"]), int(dataset["image_size"])):
            raise HarnessError(
                f"model={model['name']} takes {arch['in_channels']}x{arch['resolution']}x{arch['resolution']} images but "
                f"dataset={dataset['name']} has {dataset['channels']}x{dataset['image_size']}x{dataset['image_size']}; "
                f"choose model={dataset['name']} (or the model trained on it)."
            )
        analytic = model.get("kind") == "analytic"
        if analytic and (precision != "fp32" or compile_mode != "none"):
            raise HarnessError(f"model={model['name']} is the exact eps* of its data (no network): it runs in fp32 "
                               "without compile; drop the precision/compile overrides.")
        if (dataset.get("kind") == "exact") != analytic:
            raise HarnessError(f"dataset={dataset['name']} and model={model['name']} do not go together: exact-score "
                               "data needs its analytic model and vice versa; choose model=<the dataset's name>.")
        if analytic and not spec.exact:
            raise HarnessError(f"dataset={dataset['name']} has no held-out images for job={job}: use job=sample.")
        device = "cpu" if analytic and cfg.device == "auto" else str(cfg.device)  # closed-form eps*: CPU work
        parts, part = _parts(cfg, spec, N * repeats, bool(cfg.force), bool(cfg.dry_run))
        metrics = _metrics(_frozen(cfg.metrics), N) if spec.scored and not analytic else _frozen(cfg.metrics)
        if spec.check is not None:
            spec.check(cfg.job)
        cell = cls(
            job=job, dataset=dataset, model=model, metrics=metrics, job_options=_frozen(cfg.job),
            diffusion=diffusion, sampler=sampler, S=S, eta=eta, trajectory=cfg.trajectory, tau=tau, N=N,
            repeats=repeats, seed=seed, precision=precision, noise=noise, compile=compile_mode, batch_size=batch_size,
            threads=threads, progress=bool(cfg.progress), verbose=bool(cfg.get("verbose", False)), force=bool(cfg.force),
            device=device, dry_run=bool(cfg.dry_run), output_root=Path(cfg.output_root),
            tracking=Tracking(cfg.tracking.get("uri"), str(cfg.tracking.experiment)),
            parts=parts, part=part, rehearsal=bool(cfg.get("rehearsal", False)),
            config=_frozen(cfg),
        )
        cell.nfe  # a tau the sampler refuses (repeated or too close timesteps) is refused here
        cell.process_steps  # eta > 1 is refused here when eq. (12) is undefined for this tau
        return cell

    # --- across processes ------------------------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        """A cell sent to another process (a sweep's job): its settings, without what it computed from files (the
        content of its inputs, its keys), which the job computes again from the files as they are when it runs."""
        return {f.name: dict(v) if isinstance(v, MappingProxyType) else v
                for f in fields(self) for v in [getattr(self, f.name)]}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, MappingProxyType(value) if isinstance(value, dict) else value)

    # --- derived values -------------------------------------------------------------------------------------------
    @property
    def T(self) -> int:
        return int(self.diffusion["T"])

    @property
    def spec(self) -> registry.Job:
        """The job's registry entry: what it samples, scores, splits, costs."""
        return registry.job(self.job, self.job_options.get("module"))

    @property
    def is_exact(self) -> bool:
        """Exact-score data (harness.diffusion.analytic): samples are scored against the true law, not images."""
        return self.dataset.get("kind") == "exact"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (int(self.dataset["channels"]), int(self.dataset["image_size"]), int(self.dataset["image_size"]))

    @cached_property
    def schedule(self):
        from harness.diffusion.schedule import NoiseSchedule

        d = self.diffusion
        if d.get("schedule", "linear") == "log_snr":
            from harness.diffusion.analytic import log_snr_linear_schedule

            return log_snr_linear_schedule(int(d["T"]), float(d["lambda_max"]), float(d["lambda_min"]))
        return NoiseSchedule.linear(int(d["T"]), float(d["beta_start"]), float(d["beta_end"]))

    @cached_property
    def process_steps(self) -> list[tuple[int, float, float, float]]:
        from harness.diffusion.sampling import process_steps

        return process_steps(self.tau, self.schedule, self.eta)

    @property
    def sampler_info(self):
        from harness.diffusion.samplers import get_sampler

        return get_sampler(self.sampler)

    @property
    def nfe(self) -> int:
        """Network evaluations per image that the sampler spends along tau (a recon job runs DDIM both ways)."""
        return self.spec.nfe(self) if self.spec.nfe is not None else self.sampler_info.nfe(self.tau)

    @property
    def eta_label(self) -> str:
        return eta_label(self.eta)

    @property
    def n_images(self) -> int:
        """Images the cell samples: N per repeat; repeat k holds indices k*N .. (k+1)*N - 1."""
        return self.N * self.repeats

    @property
    def indices(self) -> range:
        """The image indices this job samples: all of the cell's, or its part's block."""
        return range(self.n_images) if self.part is None else part_range(self.n_images, self.parts, self.part)

    @property
    def part_label(self) -> str:
        """``part 1 of 3 (images 6..11)``, or "" for a whole cell."""
        if self.part is None:
            return ""
        r = self.indices
        return f"part {self.part} of {self.parts} (images {r.start}..{r.stop - 1})"

    @property
    def run_name(self) -> str:
        """What differs inside a sweep first (MLflow's list cuts long names): ``S=100 eta=1 digits/sample``."""
        lead = f"S={self.S} eta={self.eta_label}" if self.sampler == "ddim" else f"{self.sampler} NFE={self.nfe} S={self.S}"
        return f"{lead} {self.dataset['name']}/{self.job}"

    @property
    def description(self) -> str:
        what = self.spec.describe(self)
        process = "sigma-hat process" if self.eta == SIGMA_HAT else f"eta={self.eta_label}"
        return (f"{self.dataset['name']}: {what}; {self.sampler} ({process}), S={self.S} ({self.trajectory} tau, "
                f"NFE {self.nfe}), seed {self.seed}, model {self.model['name']}")

    # --- identity ---------------------------------------------------------------------------------------------------
    def _checkpoint(self) -> dict:
        ckpt = dict(self.model.get("checkpoint") or {})
        out = {"name": ckpt.get("name"), "ema": ckpt.get("ema"), "path": ckpt.get("path")}
        if ckpt.get("hub") is not None:  # only when set: the keys of cells without one stay as they were
            out["hub"] = ckpt["hub"]
        return out

    @cached_property
    def inputs(self) -> dict[str, str | None]:
        """The content of the cell's input files (harness.run.inputs): ``checkpoint``, and for a scored sample cell
        ``extractor_weights`` and ``reference``; part of both keys, recorded as tags. Reads (hashes) files, once per
        file version: a missing file is a HarnessError naming the setting."""
        from harness.run.inputs import extractor_identity, network_identities, reference_identity

        out = {"checkpoint": self.checkpoint_content}
        if self.spec.scored and not self.is_exact:
            out.update(extractor_weights=extractor_identity(self.metrics), reference=reference_identity(self.dataset))
            out.update(network_identities(self.metrics))
        return out

    @cached_property
    def checkpoint_content(self) -> str | None:
        """The content of the checkpoint (harness.run.inputs), all that the images depend on: the images folder is found
        without the reference data (a dry run counts a cell's stored images before its data is there)."""
        from harness.run.inputs import checkpoint_identity

        return checkpoint_identity(self.model)

    @cached_property
    def images_key(self) -> str:
        return cell_hash({
            "dataset": {k: self.dataset.get(k) for k in ("name", "channels", "image_size")},
            "model": {"architecture": self.model.get("architecture"), "kind": self.model.get("kind"),
                      "checkpoint": self._checkpoint(), "content": self.checkpoint_content},
            "diffusion": dict(self.diffusion), "sampler": self.sampler, "tau": list(self.tau), "eta": self.eta_label,
            "seed": self.seed, "precision": self.precision, "noise": self.noise, "compile": self.compile,
        })

    def _result(self) -> dict:
        """What determines the cell's result besides its number of repeats."""
        # fid_infinity=false adds nothing to the result, so it leaves the key of cells run before it existed alone
        metrics = {k: v for k, v in self.metrics.items()
                   if k not in ("batch_size", "weights_path", "vit_batch_size") and not (k == "fid_infinity" and not v)}
        for flag, settings in VIT_SETTINGS.items():  # off: no part of the key (cells run before they existed keep theirs)
            for k in (flag, *settings) if not metrics.get(flag) else ():
                metrics.pop(k, None)
        for section in ("dinov2", "clip"):  # where the weights come from is not the result: inputs names their content
            if section in metrics:
                metrics[section] = {k: v for k, v in metrics[section].items() if k not in ("url", "file", "weights_path")}
        job = {k: v for k, v in self.job_options.items() if k not in ("grid_images", "grid_scale", "module")}
        return {"images": self.images_key, "job": job, "N": self.N, "S": self.S, "trajectory": self.trajectory,
                "metrics": metrics if self.spec.scored else None,
                "reference": self.dataset.get("fid_reference") if self.spec.scored else None,
                "inputs": {k: v for k, v in self.inputs.items() if k != "checkpoint"}}

    @cached_property
    def key(self) -> str:
        return cell_hash({**self._result(), "repeats": self.repeats})

    @cached_property
    def series_key(self) -> str:
        """The key without the number of repeats: the cells of one series differ only in K, and since repeat k is
        always images k*N .. (k+1)*N - 1, a cell grown from K to K' > K repeats keeps the K repeats of the smaller."""
        return cell_hash(self._result())

    @property
    def images_dir(self) -> Path:
        return self.output_root / "images" / self.images_key

    def params(self) -> dict[str, Any]:
        """The flat MLflow params: every swept key, the trajectory, NFE, N, repeats, seed."""
        ckpt = self._checkpoint()
        return {
            Param.JOB: self.job, Param.DATASET: self.dataset["name"], Param.MODEL: self.model["name"],
            Param.CHECKPOINT: Path(ckpt["path"]).name if ckpt["path"] else ckpt.get("hub") or ckpt["name"],
            Param.EMA: bool(ckpt["ema"]),
            Param.SAMPLER: self.sampler, Param.S: self.S, Param.ETA: self.eta_label, Param.TRAJECTORY: self.trajectory,
            Param.NFE: self.nfe, Param.N: self.N, Param.REPEATS: self.repeats, Param.SEED: self.seed,
            Param.BATCH_SIZE: self.batch_size, Param.T: self.T, Param.PRECISION: self.precision,
            Param.NOISE: self.noise, Param.COMPILE: self.compile,
            **({Param.BLOCKS: self.blocks} if self.blocks > 1 else {}),
        }

    @property
    def blocks(self) -> int:
        """Blocks per repeat of a sample cell scored in blocks (harness.metrics.blocks); 1 otherwise."""
        return int(self.metrics.get("blocks", 1)) if self.spec.scored and not self.is_exact else 1


def task_name(name: str, cell: Cell) -> str:
    """A cell's run name and, for a part of it, which part: ``S=10 eta=0 digits/sample part 1 of 3 (images 5..9)``."""
    return f"{name} {cell.part_label}" if cell.part is not None else name


# metrics.fd_dinov2 / metrics.cmmd and the settings that only act when they are on (harness.metrics.vit_scores)
VIT_SETTINGS = {"fd_dinov2": ("dinov2",), "cmmd": ("clip", "cmmd_sigma", "cmmd_scale", "cmmd_estimator")}


def _metrics(metrics: Mapping, N: int) -> Mapping:
    """The scoring settings of a sample cell, checked before any sampling: KID's unbiased estimate needs subsets of
    at least 2 images (0 or 1 gives NaN), precision/recall a k below the images per repeat."""
    checked_int("metrics.batch_size", metrics.get("batch_size"), 1, "Set metrics.batch_size=<images per extractor call>.")
    checked_int("metrics.kid_subset_size", metrics.get("kid_subset_size"), 2,
         "KID averages an unbiased MMD over subsets of this many images (torch-fidelity's default: 1000).")
    k = checked_int("metrics.prc_neighborhood", metrics.get("prc_neighborhood"), 1,
             "Set metrics.prc_neighborhood=<k of the k-NN manifolds> (3 in Kynkaanniemi et al.).")
    if metrics.get("fd_dinov2") or metrics.get("cmmd"):
        checked_int("metrics.vit_batch_size", metrics.get("vit_batch_size", 32), 1, "Set metrics.vit_batch_size=<images per ViT call>.")
    if metrics.get("cmmd") and metrics.get("cmmd_estimator") not in ("biased", "unbiased"):
        raise HarnessError(f"metrics.cmmd_estimator={metrics.get('cmmd_estimator')!r} is not an estimator: use biased "
                           "(the published code's) or unbiased.")
    checked_int("metrics.kid_subsets", metrics.get("kid_subsets"), 1, "KID averages this many random subsets (100 by default).")
    checked_int("metrics.fid_inf_draws", metrics.get("fid_inf_draws"), 1, "FID-inf draws this many subsets per size (3).")
    fractions = metrics.get("fid_inf_fractions")
    if not fractions or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in fractions):
        raise HarnessError(f"metrics.fid_inf_fractions must be fractions in (0, 1], got {fractions!r}, e.g. "
                           "[0.5,0.6,0.7,0.8,0.9,1.0].")
    blocks = checked_int("metrics.blocks", metrics.get("blocks"), 1, "1 scores each repeat whole; 10 splits N=50000 in 10.")
    from harness.metrics.blocks import check_repeat_size

    check_repeat_size(N, k, blocks)
    return metrics


def part_range(n: int, parts: int, part: int) -> range:
    """Part ``part``'s contiguous block of the indices 0..n-1 split into ``parts`` blocks whose sizes differ by at
    most one: [part * n // parts, (part + 1) * n // parts)."""
    return range(part * n // parts, (part + 1) * n // parts)


def _parts(cfg: DictConfig, spec: registry.Job, n_images: int, force: bool, dry_run: bool) -> tuple[int, int | None]:
    """``parts`` and ``part``, checked: 0 <= part < parts, only for a job that splits, at most one part per image."""
    parts = checked_int("parts", cfg.get("parts", 1), 1, "Set parts=<number of jobs the cell is split into> (1: not split).")
    part = cfg.get("part")
    if part is not None:
        checked_int("part", part, 0, f"Set part=<0..{parts - 1}>, the part of the cell this job samples.")
    if parts == 1:
        if part not in (None, 0):
            raise HarnessError(f"part={part} needs parts=<k> with k > {part}: set parts to the number of jobs the cell "
                               "is split into, e.g. parts=4 part=1.")
        return 1, None
    whole = f"-m parts={parts}, which runs the parts 0..{parts - 1} as {parts} jobs"
    if part is None and not dry_run:
        raise HarnessError(f"parts={parts} splits the cell into {parts} jobs: give part=<0..{parts - 1}> for one of "
                           f"them, or run {whole}.")
    if part is not None and part >= parts:
        raise HarnessError(f"part={part} is not one of the parts 0..{parts - 1} of parts={parts}: use part=0..{parts - 1}.")
    if not spec.splittable:
        raise HarnessError(f"job={spec.name} cells are not split into parts: drop parts and part.")
    if parts > n_images:
        raise HarnessError(f"parts={parts} is more than the cell's {n_images} images (N x repeats): use parts <= {n_images}.")
    if force:
        raise HarnessError("force=true resamples the cell, which its parts cannot do apart (each would delete the "
                           "others' images): run the cell once unsplit with force=true (drop parts and part).")
    return parts, part


def relative(path: str | os.PathLike) -> str:
    """A path as recorded in runs: relative to the working directory when inside it, else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
