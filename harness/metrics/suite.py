"""The metric suite of a sample cell, computed with torch-fidelity's metric functions on features extracted once.

For images of a cell (K repeats of N images each, in index order) against a reference set:

* ``fid``: the Frechet distance in the dataset's feature space (eq. of Heusel et al. 2017; torch-fidelity's
  ``fid_features_to_statistics`` and ``fid_statistics_to_metric``); Inception features for the paper's datasets.
* ``kid``: the kernel inception distance (Binkowski et al. 2018) in the same features, with its std over subsets
  (``kid_subset_std``), torch-fidelity's ``kid_features_to_metric``.
* ``prc_precision``, ``prc_recall``: k-NN precision and recall (Kynkaanniemi et al. 2019), ``prc_features_to_metric``.
* ``fd_pixels``: the Frechet distance of the raw pixels on [0, 1], for images of at most 16x16 (no network at all:
  it sees the residual noise and blur that a classifier's features are trained to ignore).
* ``fid_inf`` (``metrics.fid_infinity=true``): FID extrapolated to infinitely many images (Chong & Forsyth 2020,
  "Effectively Unbiased FID and Inception Score and where to find them", sec. 3): FID's bias falls like 1/N, so
  the FIDs of random subsets of the repeat's own features at several sizes n are fitted by a line in 1/n and the
  line's value at 1/n = 0 is taken; from the features already extracted (no further network pass). With pixel
  features, ``fd_pixels_inf`` likewise. The report decides claims on these rather than on the biased plain
  distances wherever the cells log them (harness.report.claims, benchmarks/calibration.py).

Each repeat is scored on its own; ``summarize`` gives the mean, std, min and a 95% t-interval over repeats. With
``metrics.blocks`` = K > 1 (the paper's datasets: one repeat of 50,000 in 10 blocks), ``score_blocks`` scores each
repeat's images pooled and every metric but precision/recall again without each block: the jackknife's pseudo-values
(harness.metrics.blocks) give the interval and the paired verdicts.
The reference features are computed once and cached as ``.npz`` files (read with ``allow_pickle=False``: a file
planted in the cache can hold numbers, never code), named by a fingerprint of the reference's data, the extractor,
its weights and the layer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

from harness.core.errors import HarnessError
from harness.core.files import cache_dir, file_sha256
from harness.core.locks import file_lock
from harness.core.names import REPEAT_STATS, Metric, jackknife_estimate, per_repeat, repeat_stat
from harness.diffusion.analytic import frechet_distance, psd_sqrt
from harness.metrics import features as F
from harness.metrics import vit_scores as V
from harness.metrics.blocks import check_repeat_size, jackknife, jackknife_interval
from harness.metrics.references import datasets_root, reference_fingerprint, reference_images
from harness.models.digits_classifier import DEFAULT_WEIGHTS

# Rows per block of k-NN distances in precision/recall: a block is PRC_BLOCK x n float32, and torch-fidelity holds it
# twice while it concatenates, so 2,500 rows take 1 GB at n = 50,000 (its default 10,000 would take 4 GB). The
# values do not depend on it (each distance and each row's k-th neighbour is computed whole).
PRC_BLOCK = 2500


@dataclass(frozen=True)
class Scoring:
    """How a cell is scored: the cell's ``metrics`` config section plus its reference."""

    reference: str
    feature_extractor: str
    image_size: int
    batch_size: int = 500
    weights_path: str | None = None
    kid_subset_size: int = 1000
    prc_neighborhood: int = 3
    datasets_root: str | None = None
    datasets_download: bool = True  # torch-fidelity may download its own inputs (CIFAR-10) when missing
    fid_infinity: bool = False  # also fid_inf, FID extrapolated to N -> infinity (fid_infinity below)
    vit: tuple = ()  # the networks of fd_dinov2 and cmmd when they are on (harness.metrics.vit_scores)
    cmmd_kernel: tuple = ()  # metrics.cmmd_* (sigma, scale, estimator)
    vit_batch_size: int = 32
    # FID-infinity's subsets (conf metrics.fid_inf_fractions, fid_inf_draws): sizes f N for these fractions, the draws
    # at each size below N. Chong & Forsyth fit 15 sizes from N/10 to N at N = 50,000; at the digits' N = 250 in 64
    # dimensions the 1/n law needs n well above the dimension, so the sizes start at N/2.
    fid_inf_fractions: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    fid_inf_draws: int = 3
    kid_subsets: int = 100  # KID's subsets averaged (torch-fidelity's default), conf metrics.kid_subsets
    blocks: int = 1  # blocks per repeat: > 1 pools them for the headline and jackknifes them (harness.metrics.blocks)

    @property
    def networks(self) -> dict:
        return {n.space: n for n in self.vit}

    @property
    def pixels(self) -> bool:
        return self.image_size <= F.PIXELS_MAX_SIZE

    @property
    def metrics(self) -> list[str]:
        names = [Metric.FID] + [Metric.FID_INF] * self.fid_infinity + [Metric.KID, Metric.PRC_PRECISION, Metric.PRC_RECALL]
        names += [Metric.FD_PIXELS] + [Metric.FD_PIXELS_INF] * self.fid_infinity if self.pixels else []
        return names + V.metrics(self.networks, self.fid_infinity)

    def feature_space(self, metric: str) -> str:
        if metric in (Metric.FD_PIXELS, Metric.FD_PIXELS_INF):
            return F.PIXELS
        return V.feature_space(metric) or self.feature_extractor

    def layers(self) -> dict[str, list[str]]:
        """{extractor: [layers]}: one pass of the images through each extractor gives every metric's features."""
        out = {self.feature_extractor: sorted({F.default_layer(self.feature_extractor, m) for m in ("fid", "kid", "prc")})}
        if self.pixels:
            out[F.PIXELS] = ["pixels"]
        return out | {space: [V.LAYER] for space in self.networks}


def scoring_of(cell) -> Scoring:
    """How a cell (its ``metrics`` and ``dataset`` config sections) is scored."""
    m = cell.metrics
    return Scoring(reference=cell.dataset["fid_reference"], feature_extractor=m["feature_extractor"],
                   image_size=int(cell.dataset["image_size"]), batch_size=int(m["batch_size"]),
                   weights_path=m.get("weights_path"), kid_subset_size=int(m["kid_subset_size"]),
                   prc_neighborhood=int(m["prc_neighborhood"]), datasets_root=cell.dataset.get("root"),
                   fid_infinity=bool(m.get("fid_infinity", False)),
                   fid_inf_fractions=tuple(float(f) for f in m["fid_inf_fractions"]),
                   fid_inf_draws=int(m["fid_inf_draws"]), kid_subsets=int(m["kid_subsets"]), blocks=int(m["blocks"]),
                   vit=tuple(V.networks_of(m).values()),
                   cmmd_kernel=tuple((k, m[k]) for k in ("cmmd_sigma", "cmmd_scale", "cmmd_estimator") if k in m),
                   vit_batch_size=int(m.get("vit_batch_size", 32)))


def _reference_path(scoring: Scoring, extractor: str, layer: str, root: Path) -> Path:
    parts = [reference_fingerprint(scoring.reference, root), extractor]
    weights = scoring.weights_path if extractor == scoring.feature_extractor else None
    if weights:
        parts.append("w" + file_sha256(F.user_weights(extractor, weights))[:12])
    elif extractor == F.DIGITS:
        parts.append("w" + file_sha256(DEFAULT_WEIGHTS)[:12])
    elif extractor in scoring.networks:
        parts.append(V.cache_part(scoring.networks[extractor]))
    return cache_dir() / "references" / ("-".join(parts) + f"-{layer}.npz")


def reference_cached(scoring: Scoring) -> bool:
    """Whether every reference feature file this scoring needs is cached (for dry runs)."""
    root = datasets_root(scoring.reference, scoring.datasets_root)
    return all(_reference_path(scoring, e, layer, root).is_file() for e, ls in scoring.layers().items() for layer in ls)


def _load_npz(path: Path) -> torch.Tensor | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return torch.from_numpy(np.ascontiguousarray(data["features"], dtype=np.float32))
    except Exception:  # noqa: BLE001 - unreadable, truncated or planted: recomputed, never trusted
        path.unlink(missing_ok=True)
        return None


def reference_features(scoring: Scoring, device: torch.device, progress_factory=None) -> dict[tuple[str, str], torch.Tensor]:
    """The reference's features for every (extractor, layer), from the cache or computed once (a file lock makes
    parallel jobs compute them once)."""
    root = datasets_root(scoring.reference, scoring.datasets_root)
    wanted = {(e, layer): _reference_path(scoring, e, layer, root) for e, ls in scoring.layers().items() for layer in ls}
    loaded = {k: _load_npz(p) for k, p in wanted.items() if p.is_file()}
    if all(v is not None for v in loaded.values()) and len(loaded) == len(wanted):
        return loaded
    folder = next(iter(wanted.values())).parent
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock"):
        loaded = {k: _load_npz(p) for k, p in wanted.items() if p.is_file()}
        missing = [k for k, p in wanted.items() if loaded.get(k) is None]
        if missing:
            images = reference_images(scoring.reference, root, scoring.datasets_download)
            layers = {e: [layer for ee, layer in missing if ee == e] for e in dict.fromkeys(e for e, _ in missing)}
            computed = _extract(images, scoring, layers, device, progress_factory, f"reference features ({scoring.reference})")
            for key in missing:
                tmp = wanted[key].with_suffix(".tmp.npz")
                try:
                    np.savez(tmp, features=computed[key].numpy())
                    tmp.replace(wanted[key])
                finally:  # a failed write (a full disk) leaves no partial file behind
                    tmp.unlink(missing_ok=True)
                loaded[key] = computed[key]
    return loaded


def _extract(images: Dataset, scoring: Scoring, layers: dict[str, list[str]], device: torch.device, progress_factory,
             what: str, chunk: int | None = None, timings: dict | None = None) -> dict[tuple[str, str], torch.Tensor]:
    """Each extractor's features of ``images``: the dataset's extractors in batches of ``batch_size``, then the ViTs
    of fd_dinov2 and cmmd (harness.metrics.vit_scores) in batches of ``vit_batch_size``, their seconds added to
    ``timings['vit_seconds']`` (the dry run's price of these metrics)."""
    out = {}
    for group in ([e for e in layers if e not in scoring.networks], [e for e in layers if e in scoring.networks]):
        if not group:
            continue
        extractors = {e: V.make_extractor(scoring.networks[e], device) if e in scoring.networks else
                      F.make_extractor(e, layers[e], scoring.weights_path if e == scoring.feature_extractor else None, device)
                      for e in group}
        progress = progress_factory(len(images), f"{what} ({', '.join(group)})") if progress_factory else None
        vit, start = group[0] in scoring.networks, time.perf_counter()
        out.update(F.extract(images, extractors, scoring.vit_batch_size if vit else scoring.batch_size, device,
                             progress, chunk=chunk))
        if vit and timings is not None:
            timings["vit_seconds"] = timings.get("vit_seconds", 0.0) + time.perf_counter() - start
        if progress is not None:
            progress.close()
    return out


def fid_infinity(gen: np.ndarray, ref_mu: np.ndarray, ref_sigma: np.ndarray, fractions=Scoring.fid_inf_fractions,
                 draws: int = Scoring.fid_inf_draws, seed: int = 0) -> float:
    """FID-infinity (Chong & Forsyth 2020, sec. 3.2): E[FID_n] = FID_inf + b / n + O(1/n^2), so the Frechet distances
    of random subsets of ``gen`` (sizes f n for ``fractions`` f, ``draws`` subsets per size below n, drawn by a
    generator seeded with ``seed`` so the value is reproducible) to the reference statistics are fitted by least
    squares against 1/n, and the intercept is returned. Float64, on ``analytic.frechet_distance``."""
    gen = np.asarray(gen, dtype=np.float64)
    n, rng, root = len(gen), np.random.default_rng(seed), psd_sqrt(ref_sigma)
    sizes = sorted({min(n, max(2, round(f * n))) for f in fractions})
    if len(sizes) < 2:
        raise HarnessError(f"FID-infinity needs at least 2 subset sizes; got {sizes} from N={n}: raise N.")
    inverse, fd = [], []
    for m in sizes:
        for _ in range(1 if m == n else draws):
            sub = gen if m == n else gen[rng.choice(n, m, replace=False)]
            inverse.append(1.0 / m)
            fd.append(frechet_distance(ref_mu, ref_sigma, sub.mean(0), np.cov(sub, rowvar=False), root1=root))
    _slope, intercept = np.polyfit(inverse, fd, 1)
    return float(intercept)


def feature_metrics(gen: dict[tuple[str, str], torch.Tensor], ref: dict[tuple[str, str], torch.Tensor],
                    scoring: Scoring, prc: bool = True) -> dict:
    """One repeat's metrics from its features ``gen`` and the reference's ``ref`` ({(extractor, layer): [n, d]});
    ``prc=False``: without precision/recall (a k-NN over all images: not jackknifed)."""
    e = scoring.feature_extractor
    fid_f, kid_f, prc_f = ((e, F.default_layer(e, m)) for m in ("fid", "kid", "prc"))
    ref_stats = fid_features_to_statistics(ref[fid_f])
    out = {Metric.FID: fid_statistics_to_metric(fid_features_to_statistics(gen[fid_f]), ref_stats,
                                                verbose=False)[KEY_METRIC_FID]}
    if scoring.fid_infinity:
        out[Metric.FID_INF] = _fid_inf(gen[fid_f], ref_stats, scoring)
    subset = min(scoring.kid_subset_size, len(gen[kid_f]), len(ref[kid_f]))
    kid = kid_features_to_metric(gen[kid_f], ref[kid_f], kid_subset_size=subset, kid_subsets=scoring.kid_subsets,
                                 verbose=False)  # torch-fidelity's defaults otherwise (its kernel, rng_seed 2020)
    out[Metric.KID], out[Metric.KID_SUBSET_STD] = kid[KEY_METRIC_KID_MEAN], kid[KEY_METRIC_KID_STD]
    if prc:
        prcs = prc_features_to_metric(gen[prc_f], ref[prc_f], prc_neighborhood=scoring.prc_neighborhood,
                                      prc_batch_size=PRC_BLOCK, save_cpu_ram=True, verbose=False)
        out[Metric.PRC_PRECISION], out[Metric.PRC_RECALL] = prcs[KEY_METRIC_PRECISION], prcs[KEY_METRIC_RECALL]
    if scoring.pixels:
        key = (F.PIXELS, "pixels")
        pixels_ref = fid_features_to_statistics(ref[key])
        out[Metric.FD_PIXELS] = fid_statistics_to_metric(fid_features_to_statistics(gen[key]), pixels_ref,
                                                         verbose=False)[KEY_METRIC_FID]
        if scoring.fid_infinity:
            out[Metric.FD_PIXELS_INF] = _fid_inf(gen[key], pixels_ref, scoring)
    if V.dinov2.NAME in scoring.networks:  # EDM2's fd_dinov2: the Frechet distance as FID's, in DINOv2 features
        key = (V.dinov2.NAME, V.LAYER)
        dino_ref = fid_features_to_statistics(ref[key])
        out[Metric.FD_DINOV2] = fid_statistics_to_metric(fid_features_to_statistics(gen[key]), dino_ref,
                                                         verbose=False)[KEY_METRIC_FID]
        if scoring.fid_infinity:
            out[Metric.FD_DINOV2_INF] = _fid_inf(gen[key], dino_ref, scoring)
    if V.clip.NAME in scoring.networks:
        key = (V.clip.NAME, V.LAYER)
        out[Metric.CMMD] = V.cmmd_score(gen[key], ref[key], dict(scoring.cmmd_kernel))
    return {k: float(v) for k, v in out.items()}


def _fid_inf(gen: torch.Tensor, ref_stats: dict, scoring: Scoring) -> float:
    return fid_infinity(gen.double().numpy(), ref_stats["mu"], ref_stats["sigma"], scoring.fid_inf_fractions,
                        scoring.fid_inf_draws)


def _features(images: Dataset, repeats: int, scoring: Scoring, device: torch.device, progress_factory=None,
              timings: dict | None = None):
    """(reference features, the images' features, images per repeat), each image through each extractor once."""
    n = len(images)
    if repeats < 1 or n % repeats or n // repeats < 2:
        raise HarnessError(f"cannot score {n} images as {repeats} repeats of at least 2 images each.")
    per = n // repeats
    check_repeat_size(per, scoring.prc_neighborhood, scoring.blocks)
    ref = reference_features(scoring, device, progress_factory)
    gen = _extract(images, scoring, scoring.layers(), device, progress_factory, "features", chunk=per, timings=timings)
    return ref, gen, per


def score(images: Dataset, repeats: int, scoring: Scoring, device: torch.device, progress_factory=None,
          timings: dict | None = None) -> list[dict]:
    """Each repeat's metrics: repeat k is images k*N .. (k+1)*N - 1 of ``images`` (N = len(images) / repeats);
    ``timings['vit_seconds']``: the seconds of the images' FD_DINOv2 and CMMD features."""
    ref, gen, per = _features(images, repeats, scoring, device, progress_factory, timings)
    return [feature_metrics({k: v[r * per:(r + 1) * per] for k, v in gen.items()}, ref, scoring) for r in range(repeats)]


def score_blocks(images: Dataset, repeats: int, scoring: Scoring, device: torch.device,
                 progress_factory=None, timings: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(each repeat's metrics of all its images pooled, the jackknife pseudo-values of its ``scoring.blocks`` blocks,
    repeat-major): harness.metrics.blocks. Precision/recall are pooled only (no pseudo-values)."""
    ref, gen, per = _features(images, repeats, scoring, device, progress_factory, timings)
    pooled, pseudo = [], []
    for r in range(repeats):
        feats = {k: v[r * per:(r + 1) * per] for k, v in gen.items()}
        full = feature_metrics(feats, ref, scoring)
        _, p = jackknife(feats, scoring.blocks, lambda f: _without(feature_metrics(f, ref, scoring, prc=False)),
                         _without(full))
        pooled.append(full)
        pseudo += p
    return pooled, pseudo


def _without(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != Metric.KID_SUBSET_STD}


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """The two-sided t-interval of the mean of independent values (n - 1 degrees of freedom); nan for n < 2."""
    from scipy import stats  # lazy: scipy: only when it is used

    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def summarize(per_repeat_metrics: list[dict], pseudo: list[dict] | None = None) -> dict[str, float]:
    """MLflow metrics of a cell: each repeat's ``m_r<k>``, and per metric the mean ``m``, and over >= 2 repeats its
    std, min and 95% t-interval (names.repeat_stat). With ``pseudo`` (a blocked cell: ``score_blocks``), ``m`` is the
    mean over repeats of the pooled metric, ``m_min`` their minimum (EDM's convention), the ``m_r<k>`` are the
    pseudo-values, ``m_jackknife`` their mean, ``m_std`` their sd and the interval ``m`` -+ t sd / sqrt(units)."""
    if pseudo is not None:
        return _summarize_blocks(per_repeat_metrics, pseudo)
    out: dict[str, float] = {}
    for name in per_repeat_metrics[0]:
        values = [r[name] for r in per_repeat_metrics]
        out.update({per_repeat(name, k): v for k, v in enumerate(values)})
        out[name] = float(np.mean(values))
        if len(values) >= 2:
            low, high = t_interval(values)
            stats = {"std": float(np.std(values, ddof=1)), "min": float(np.min(values)), "ci95_low": low, "ci95_high": high}
            out.update({repeat_stat(name, s): stats[s] for s in REPEAT_STATS})
    return out


def _summarize_blocks(pooled: list[dict], pseudo: list[dict]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in pooled[0]:
        out[name] = float(np.mean([r[name] for r in pooled]))
        out[repeat_stat(name, "min")] = float(np.min([r[name] for r in pooled]))
        values = [p[name] for p in pseudo if name in p]
        if not values:
            continue
        out.update({per_repeat(name, k): v for k, v in enumerate(values)})
        low, high = jackknife_interval(out[name], values)
        out.update({jackknife_estimate(name): float(np.mean(values)), repeat_stat(name, "std"): float(np.std(values, ddof=1)),
                    repeat_stat(name, "ci95_low"): low, repeat_stat(name, "ci95_high"): high})
    return out


def headline_text(summary: dict[str, float], metric: str) -> str:
    """``fid 3.21 +- 0.40`` (the 95% CI half-width), or ``fid 3.21`` from one repeat."""
    value = summary[metric]
    low = summary.get(repeat_stat(metric, "ci95_low"))
    if low is None or not math.isfinite(low):
        return f"{metric} {value:.4g}"
    return f"{metric} {value:.4g} +- {value - low:.2g}"
