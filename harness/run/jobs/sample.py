"""The sample job (Tables 1 and 3, the sampler grids): sample the cell's K x N images, time the sampler, score each
repeat (the metric suite of harness.metrics.suite, or harness.metrics.exact for exact-score data) and log every repeat's values
and their summary. A part of a cell (harness.run.parts) samples its block of the indices, and scores the cell only if
it is the part that completes it."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import torch

from harness.core import faults
from harness.core.names import Metric, Param, Tag
from harness.diffusion.analytic import exact_mixture
from harness.diffusion.images import save_grid, to_uint8
from harness.metrics.exact import exact_w2, score_exact
from harness.metrics.references import datasets_root, reference_fingerprint
from harness.metrics.suite import headline_text, score, score_blocks, scoring_of, summarize
from harness.run.generate import generate
from harness.run.cell import checked_int
from harness.run.jobs.context import JobContext
from harness.run.parts import part_done
from harness.run.registry import Job
from harness.run.shards import ShardStore, images_store
from harness.run.disk import stored_count
from harness.tracking import store as tracking


def run(ctx: JobContext) -> dict:
    cell = ctx.cell
    store = images_store(cell)
    if cell.force:
        store.clear()  # force resamples (a cell in parts refuses force); reusing shards is what resume does
    model = ctx.load_model()
    if cell.part is None:
        ctx.run.set_tags(grown_from(cell))
    progress = ctx.progress(len(cell.indices), "sampling")
    gen = generate(model, store, sampler=cell.sampler_info, indices=cell.indices, seed=cell.seed, tau=cell.tau,
                   schedule=cell.schedule, eta=cell.eta, batch_size=cell.batch_size, device=ctx.device,
                   noise_scheme=cell.noise, progress=progress, after_batch=ctx.after_batch)
    progress.close()
    if cell.part is not None:
        return _part_end(ctx, model, gen)
    metrics = sampling_metrics(gen.sampled, gen.seconds, cell.nfe)
    metrics[Metric.IMAGES_REUSED] = len(cell.indices) - gen.sampled
    if gen.nfe is not None:
        metrics[Metric.NFE_COUNTED] = gen.nfe
    ctx.run.log_metrics(metrics)
    faults.point("scoring", task=ctx.index)
    return _score(ctx, model, store, metrics)


def grown_from(cell) -> dict[str, str]:
    """The tags of a cell grown by repeats: the finished run of its series (the same cell with fewer repeats) with
    the most repeats, whose images are this cell's first repeats; {} when there is none."""
    uri = tracking.tracking_uri(cell.tracking.uri)
    exp = tracking.experiment_id(uri, cell.tracking.experiment)
    if exp is None:
        return {}
    with tracking.store_errors(uri):
        runs = tracking.client(uri).search_runs(
            [exp], filter_string=f"tags.{Tag.CELL_SERIES} = '{cell.series_key}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=500)
    smaller = [r for r in runs if int(r.data.params.get(Param.REPEATS, 1)) < cell.repeats]
    if not smaller:
        return {}
    best = max(smaller, key=lambda r: int(r.data.params.get(Param.REPEATS, 1)))  # ties: the newest (sort is stable)
    return {Tag.GROWN_FROM: best.info.run_id, Tag.GROWN_FROM_REPEATS: best.data.params.get(Param.REPEATS, "1")}


def _part_end(ctx: JobContext, model, gen) -> dict:
    """A part of a cell (harness.run.parts) that sampled its block: record it; if that completes the cell, score it."""
    cell = ctx.cell
    if gen.nfe is not None:
        ctx.run.log_metrics({Metric.NFE_COUNTED: gen.nfe})
    end = part_done(cell, ctx.run, ctx.device, gen.sampled, gen.seconds)
    sampled = f"{gen.sampled} images sampled" + (f" in {gen.seconds:.1f} s" if gen.sampled else "")
    if end.store is None:
        ctx.keep_open = True
        parts = f"parts done: {', '.join(map(str, end.parts_done))} of {cell.parts}"
        waiting = (f"{end.scoring} is scoring the cell" if end.scoring else
                   f"{end.missing} of the cell's {cell.n_images} images still to come ({parts})" if end.missing else
                   f"every image is there; the last part to record its block scores the cell ({parts})")
        ctx.summary = f"{sampled}; {waiting}"
        return {}
    metrics = sampling_metrics(int(end.images), end.seconds, cell.nfe)
    ctx.run.log_metrics(metrics)
    return _score(ctx, model, end.store, metrics, f"{sampled}, the last of {cell.parts} parts; ")


def sampling_metrics(sampled: int, seconds: float, nfe: int) -> dict[str, float]:
    """Images sampled and, if any, the sampling time and throughput (seconds per image per NFE: the dry run's rate)."""
    metrics = {Metric.IMAGES_SAMPLED: sampled}
    if sampled:
        metrics.update({Metric.SAMPLING_SECONDS: seconds, Metric.SECONDS_PER_IMAGE: seconds / sampled,
                        Metric.IMAGES_PER_SECOND: sampled / seconds, Metric.SECONDS_PER_NFE_IMAGE: seconds / (sampled * nfe)})
    return metrics


def _score(ctx: JobContext, model, store: ShardStore, metrics: dict, note: str = "") -> dict:
    """The sample grid, then every repeat's metrics and their summary, streamed from the shards."""
    cell = ctx.cell
    images = store.images(cell.n_images)
    _log_grid(ctx, images.head(int(cell.job_options["grid_images"])))

    start = time.perf_counter()
    summary, spaces, against = _score_exact(ctx, images, model) if cell.is_exact else _score_images(ctx, images)
    summary[Metric.SCORING_SECONDS] = time.perf_counter() - start
    headline = cell.metrics["headline"]
    ctx.run.set_tags({Tag.HEADLINE_METRIC: headline, Tag.SAMPLER_ORDER: cell.sampler_info.order,
                      **{Tag.FEATURES_PREFIX + m: space for m, space in spaces.items()}})
    ctx.run.log_metrics(summary)
    metrics.update(summary)
    ctx.headline = headline_text(summary, headline)
    per_image = (f", {1000 * metrics[Metric.SECONDS_PER_IMAGE]:.2f} ms/img" if Metric.SECONDS_PER_IMAGE in metrics
                 else " (all from shards)")
    blocks = f" in {cell.blocks} blocks each" if cell.blocks > 1 else ""
    ctx.summary = (f"{note}{ctx.headline} [{spaces[headline]} vs {against}], {cell.repeats} x {cell.N} images{blocks}, "
                   f"NFE {cell.nfe}{per_image}")
    return metrics


def _score_images(ctx: JobContext, images) -> tuple[dict, dict[str, str], str]:
    scoring = scoring_of(ctx.cell)
    timings = {}
    if scoring.blocks > 1:  # the paper's budget: each repeat pooled, a block jackknife (harness.metrics.blocks)
        summary = summarize(*score_blocks(images, ctx.cell.repeats, scoring, ctx.device, ctx.progress, timings=timings))
    else:
        summary = summarize(score(images, ctx.cell.repeats, scoring, ctx.device, ctx.progress, timings=timings))
    if "vit_seconds" in timings:  # what FD_DINOv2's and CMMD's features cost per image here (priced by dry runs)
        summary[Metric.VIT_SECONDS_PER_IMAGE] = timings["vit_seconds"] / len(images)
    ctx.run.set_tags({Tag.FEATURE_EXTRACTOR: scoring.feature_extractor, Tag.FID_REFERENCE: scoring.reference})
    digest = reference_fingerprint(scoring.reference, datasets_root(scoring.reference, scoring.datasets_root))
    ctx.run.log_dataset(scoring.reference, digest=digest, source=f"torch-fidelity input {scoring.reference}")
    return summary, {m: scoring.feature_space(m) for m in scoring.metrics}, scoring.reference


def _score_exact(ctx: JobContext, images, model) -> tuple[dict, dict[str, str], str]:
    cell = ctx.cell
    mixture = exact_mixture(cell.model["mixture"])
    per_repeat = score_exact(images.all(), cell.repeats, mixture, seed=cell.seed, tau=cell.tau, schedule=cell.schedule,
                             noise_scheme=cell.noise, deterministic=cell.eta == 0,
                             fid_inf={"fractions": tuple(cell.metrics["fid_inf_fractions"]),
                                      "draws": int(cell.metrics["fid_inf_draws"])})
    if len(mixture.stds) == 1 and cell.eta == 0:
        w2 = exact_w2(cell.sampler_info.sample, model, cell.tau, cell.schedule, mixture)
        ctx.run.log_metrics({Metric.W2_EXACT: w2})
    digest = hashlib.sha256(mixture.means.numpy().tobytes() + mixture.stds.numpy().tobytes()).hexdigest()
    ctx.run.log_dataset(mixture.name, digest=digest, source=f"harness.diffusion.analytic: {mixture.description}")
    spaces = {name: "true law" if name in (Metric.FD_TRUE, Metric.FD_TRUE_INF) else "exact flow" for name in per_repeat[0]}
    return summarize(per_repeat), spaces, f"the true {mixture.name} law"


def _log_grid(ctx: JobContext, first: torch.Tensor) -> None:
    """samples.png: the first images (a scatter plot for 2-D data)."""
    cell = ctx.cell
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.png"
        if cell.image_shape[1:] == (1, 1):
            import matplotlib  # lazy: matplotlib: only when a figure is drawn

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # lazy: matplotlib: only when a figure is drawn

            fig, ax = plt.subplots(figsize=(4, 4))
            points = first.flatten(1).float().numpy()
            ax.scatter(points[:, 0], points[:, 1], s=4)
            ax.set_aspect("equal")
            fig.savefig(path, dpi=100, bbox_inches="tight")
            plt.close(fig)
        else:
            images = first if first.dtype == torch.uint8 else to_uint8(first)
            save_grid(images, path, nrow=10, scale=int(cell.job_options["grid_scale"]))
        ctx.run.log_artifact(path)


def stored_images(cell) -> int:
    """How many of this cell's images its images folder holds already (a resumed cell, or one grown by repeats),
    counted from the shard names without reading them (a sampling run checks each shard)."""
    return stored_count(cell.images_dir, cell.indices)


def _check(options) -> None:
    checked_int("job.grid_images", options.get("grid_images"), 1, "Set job.grid_images=<images in the sample grid>.")
    checked_int("job.grid_scale", options.get("grid_scale"), 1, "Set job.grid_scale=<pixels per image pixel>.")


JOB = Job("sample", run, describe=lambda cell: f"{cell.repeats} x {cell.N} images scored", scored=True,
          splittable=True, images=lambda cell: len(cell.indices), stored=stored_images, check=_check)
