"""The sample job (Tables 1 and 3): sample the cell's K x N images, time the sampler, score each repeat with the
metric suite (harness.metrics) and log every repeat's values and their summary."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..generate import generate
from ..images import save_grid
from ..metrics import Scoring, headline_text, score, summarize
from ..names import Metric, Tag
from ..shards import ShardStore
from .context import JobContext


def scoring_of(cell) -> Scoring:
    m = cell.metrics
    return Scoring(reference=cell.dataset["fid_reference"], feature_extractor=m["feature_extractor"],
                   image_size=int(cell.dataset["image_size"]), batch_size=int(m["batch_size"]),
                   weights_path=m.get("weights_path"), kid_subset_size=int(m["kid_subset_size"]),
                   prc_neighborhood=int(m["prc_neighborhood"]), datasets_root=cell.dataset.get("root"))


def run(ctx: JobContext) -> dict:
    cell = ctx.cell
    scoring = scoring_of(cell)
    model = ctx.load_model()
    store = ShardStore(cell.images_dir, cell.image_shape)
    if cell.force:
        store.clear()  # force resamples; reusing shards is what resume does
    n = cell.n_images
    progress = ctx.progress(n, "sampling")
    gen = generate(model, store, n=n, seed=cell.seed, tau=cell.tau, schedule=cell.schedule, eta=cell.eta,
                   batch_size=cell.batch_size, device=ctx.device, progress=progress, after_batch=ctx.after_batch)
    progress.close()
    metrics = {Metric.IMAGES_SAMPLED: gen.sampled}
    if gen.sampled:
        metrics.update({Metric.SAMPLING_SECONDS: gen.seconds, Metric.SECONDS_PER_IMAGE: gen.seconds / gen.sampled,
                        Metric.IMAGES_PER_SECOND: gen.sampled / gen.seconds,
                        Metric.SECONDS_PER_NFE_IMAGE: gen.seconds / (gen.sampled * cell.nfe)})
    images = store.images(n)
    with tempfile.TemporaryDirectory() as tmp:
        grid = save_grid(images.head(int(cell.job_options["grid_images"])), Path(tmp) / "samples.png", nrow=10,
                         scale=int(cell.job_options["grid_scale"]))
        ctx.run.log_artifact(grid)
    ctx.run.log_metrics(metrics)

    start = time.perf_counter()
    per_repeat = score(images, cell.repeats, scoring, ctx.device, ctx.progress)
    summary = summarize(per_repeat)
    summary[Metric.SCORING_SECONDS] = time.perf_counter() - start
    ctx.run.set_tags({Tag.FEATURE_EXTRACTOR: scoring.feature_extractor, Tag.FID_REFERENCE: scoring.reference,
                      Tag.HEADLINE_METRIC: cell.metrics["headline"],
                      **{Tag.FEATURES_PREFIX + m: scoring.feature_space(m) for m in scoring.metrics}})
    ctx.run.log_dataset(scoring.reference, digest=reference_digest(scoring), source=f"torch-fidelity input {scoring.reference}")
    ctx.run.log_metrics(summary)
    metrics.update(summary)
    headline = cell.metrics["headline"]
    ctx.headline = headline_text(summary, headline)
    per_image = f", {1000 * metrics[Metric.SECONDS_PER_IMAGE]:.2f} ms/img" if gen.sampled else " (all from shards)"
    ctx.summary = (f"{ctx.headline} [{scoring.feature_space(headline)} vs {scoring.reference}], "
                   f"{cell.repeats} x {cell.N} images, NFE {cell.nfe}{per_image}")
    return metrics


def reference_digest(scoring: Scoring) -> str:
    from ..references import datasets_root, reference_fingerprint

    return reference_fingerprint(scoring.reference, datasets_root(scoring.reference, scoring.datasets_root))
