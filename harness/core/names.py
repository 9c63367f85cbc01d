"""The names of everything the runner writes to MLflow and the report reads back (params, tags, metrics), each in one
place, so the writer and the reader cannot drift apart. A cell of K repeats logs ``<metric>_r<k>`` per repeat and
its summary under ``repeat_stat(metric, ...)``; the plain ``<metric>`` is the mean (in blocks: harness.metrics.blocks)."""

from __future__ import annotations

from typing import NamedTuple


class Param:
    JOB = "job"
    DATASET = "dataset"
    MODEL = "model"
    CHECKPOINT = "checkpoint"
    EMA = "ema"
    SAMPLER = "sampler"
    S = "S"
    ETA = "eta"
    TRAJECTORY = "trajectory"
    NFE = "nfe"
    N = "N"
    REPEATS = "repeats"
    BLOCKS = "blocks"  # blocks per repeat (harness.metrics.blocks); logged only when > 1
    SEED = "seed"
    BATCH_SIZE = "batch_size"
    T = "T"
    PRECISION = "precision"
    NOISE = "noise"
    COMPILE = "compile"


class Tag:
    KIND = "kind"  # "cell" (a job of a sweep) or "sweep" (a multirun's parent run)
    CELL_KEY = "cell_key"
    CELL_SERIES = "cell_series"  # the cell key without repeats: a grown cell and the smaller ones it reuses share it
    GROWN_FROM = "grown_from"  # a grown cell: the finished run of its series with the most repeats below its own
    GROWN_FROM_REPEATS = "grown_from_repeats"  # ... and that run's repeats (the first ones of this cell, reused)
    SWEEP_ID = "sweep_id"
    GIT_COMMIT = "git_commit"
    DEVICE = "device"
    DEVICE_NAME = "device_name"
    THREADS = "threads"
    HOST = "host"
    PID = "pid"  # the process that owns a RUNNING run (reconcile_orphans); a cell in parts: its finishing part's
    SLURM_JOB_ID = "slurm_job_id"  # the Slurm task that runs it ("123_4" for an array task): a sweep marks it KILLED when that ends
    PREEMPTED = "preempted"  # times its Slurm task was preempted or timed out (SIGUSR2); each resumed in this run
    PARTS = "parts"  # a cell run in parts (harness.run.parts): how many
    PARTS_DONE = "parts_done"  # the parts that sampled their block, e.g. "0,2"
    FINISHING_PART = "finishing_part"  # the part that found the cell complete and scores it
    CELL_DIR = "cell_dir"
    CHECKPOINT_SHA256 = "checkpoint_sha256"
    CHECKPOINT_PATH = "checkpoint_path"
    CHECKPOINT_WEIGHTS = "checkpoint_weights"
    CHECKPOINT_HUB = "checkpoint_hub"  # a hub checkpoint: "<repo>@<commit>" (harness.models.hub)
    CHECKPOINT_NOTE = "checkpoint_note"  # how a hub model differs from the DDIM code's file (EMA or not, step)

    INPUTS_PREFIX = "inputs."  # inputs.<checkpoint|extractor_weights|reference>: the content of the cell's input files
    FEATURE_EXTRACTOR = "feature_extractor"
    FID_REFERENCE = "fid_reference"
    HEADLINE_METRIC = "headline_metric"
    SAMPLER_ORDER = "sampler_order"  # the theoretical order of the sampler's ODE solver
    DTYPE = "dtype"
    TIMING_BATCH_SIZE = "timing_batch_size"
    ERROR = "error"
    NONFINITE_METRICS = "nonfinite_metrics"  # the metrics of a run that are NaN or +-inf, comma-separated (flagged)
    FEATURES_PREFIX = "features."  # features.<metric> = the feature space a metric was computed in
    REHEARSAL = "rehearsal"  # "true" on the runs of a rehearsal (harness.rehearsal: stand-in weights and data)


class Metric:
    # scores of a sample cell (each per repeat and summarised)
    FID = "fid"
    KID = "kid"
    KID_SUBSET_STD = "kid_subset_std"  # torch-fidelity's std of KID over its subsets, within one repeat
    PRC_PRECISION = "prc_precision"
    PRC_RECALL = "prc_recall"
    FD_PIXELS = "fd_pixels"
    FID_INF = "fid_inf"  # FID extrapolated to N -> infinity (Chong & Forsyth 2020), metrics.fid_infinity=true
    FD_PIXELS_INF = "fd_pixels_inf"  # fd_pixels extrapolated likewise (with fid_inf)
    FD_DINOV2 = "fd_dinov2"  # Frechet distance in DINOv2 ViT-L/14 features, EDM2's (metrics.fd_dinov2=true)
    FD_DINOV2_INF = "fd_dinov2_inf"  # fd_dinov2 extrapolated likewise (with fid_inf)
    CMMD = "cmmd"  # CMMD in CLIP ViT-L/14-336 embeddings (Jayasumana et al. 2024; metrics.cmmd=true)
    # scores of an exact-score dataset (harness.metrics.exact)
    FD_TRUE = "fd_true"
    FD_TRUE_INF = "fd_true_inf"  # fd_true extrapolated to N -> infinity (as fid_inf)
    FLOW_RMSE = "flow_rmse"
    W2_EXACT = "w2_exact"  # exact, no sampling noise: logged once per cell
    # sampling and scoring time
    IMAGES_SAMPLED = "images_sampled"
    IMAGES_REUSED = "images_reused"  # images of the cell found in its images folder (a resumed or grown cell)
    SAMPLING_SECONDS = "sampling_seconds"
    SECONDS_PER_IMAGE = "seconds_per_image"
    IMAGES_PER_SECOND = "images_per_second"
    SECONDS_PER_NFE_IMAGE = "seconds_per_nfe_image"
    SCORING_SECONDS = "fid_seconds"
    VIT_SECONDS_PER_IMAGE = "vit_seconds_per_image"  # FD_DINOv2's and CMMD's features per image (both networks)
    COMPILE_SECONDS = "compile_seconds"
    NFE_COUNTED = "nfe_counted"
    # reconstruction (Table 2)
    RECON_MSE = "recon_mse"
    RECON_MSE_STDERR = "recon_mse_stderr"
    N_IMAGES = "n_images"
    RECON_SECONDS = "recon_seconds"
    NFE_PER_IMAGE = "nfe_per_image"
    # timing (Figure 4)
    SECONDS_PER_BATCH = "seconds_per_batch"
    SECONDS_PER_BATCH_MIN = "seconds_per_batch_min"
    SECONDS_PER_BATCH_MAX = "seconds_per_batch_max"
    SECONDS_PER_NFE = "seconds_per_nfe"
    HOURS_50K = "hours_50k"


class Score(NamedTuple):
    """What the report needs to know of a metric a cell is judged on."""

    label: str  # how tables, figures and claims name it
    lower_is_better: bool
    description: str


SCORES = {  # the metrics cells are compared on, in the report's order: a new metric is named here and computed in
    # harness.metrics.suite (or harness.metrics.exact), nowhere else
    Metric.FID: Score("FID", True, "Frechet distance in the dataset's features"),
    Metric.FID_INF: Score("FID-inf", True, "FID extrapolated to infinitely many images (Chong & Forsyth 2020)"),
    Metric.KID: Score("KID", True, "kernel inception distance (unbiased MMD^2, cubic kernel) in the dataset's features"),
    Metric.PRC_PRECISION: Score("precision", False, "k-NN precision in the dataset's features"),
    Metric.PRC_RECALL: Score("recall", False, "k-NN recall in the dataset's features"),
    Metric.FD_PIXELS: Score("FD", True, "Frechet distance of the raw pixels on [0, 1]"),
    Metric.FD_PIXELS_INF: Score("FD-inf", True, "the pixel Frechet distance extrapolated likewise"),
    Metric.FD_DINOV2: Score("FD_DINOv2", True, "Frechet distance in DINOv2 ViT-L/14 features (EDM2's fd_dinov2)"),
    Metric.FD_DINOV2_INF: Score("FD_DINOv2-inf", True, "FD_DINOv2 extrapolated to infinitely many images likewise"),
    Metric.CMMD: Score("CMMD", True, "MMD^2 x 1000 of CLIP ViT-L/14-336 embeddings, Gaussian kernel sigma 10 "
                       "(Jayasumana et al. 2024)"),
    Metric.FD_TRUE: Score("FD to the true law", True, "Frechet distance to the exact law of exact-score data"),
    Metric.FD_TRUE_INF: Score("FD-inf to the true law", True, "the Frechet distance to the exact law extrapolated likewise"),
    Metric.FLOW_RMSE: Score("flow RMSE", True, "RMS distance to the exact probability-flow solution from the same x_T"),
    Metric.RECON_MSE: Score("MSE", True, "reconstruction error per dimension, pixels on [0, 1] (Table 2)"),
}


REPEAT_STATS = ("std", "min", "ci95_low", "ci95_high")


def per_repeat(metric: str, k: int) -> str:
    """The metric of repeat k (images k*N .. (k+1)*N - 1 of the cell): ``fid_r0``, ``fid_r1``, ..."""
    return f"{metric}_r{k}"


PART_TAGS = ("state", "host", "pid", "device", "error")  # state: running | done | failed | killed
PART_METRICS = ("images", "seconds")  # sampled by the part, over its completed attempts


def part_key(part: int, what: str) -> str:
    """A part's tag or metric on its cell's run: ``part_2_state``, ``part_2_images``, ..."""
    if what not in PART_TAGS + PART_METRICS:
        raise ValueError(f"unknown part record {what!r}; one of {PART_TAGS + PART_METRICS}")
    return f"part_{part}_{what}"


def jackknife_estimate(metric: str) -> str:
    """A blocked cell's bias-corrected value, the mean of its pseudo-values (harness.metrics.blocks): ``fid_jackknife``."""
    return f"{metric}_jackknife"


def repeat_stat(metric: str, stat: str) -> str:
    """A summary over a cell's repeats: ``fid_std``, ``fid_min``, ``fid_ci95_low``, ``fid_ci95_high``."""
    if stat not in REPEAT_STATS:
        raise ValueError(f"unknown repeat statistic {stat!r}; one of {REPEAT_STATS}")
    return f"{metric}_{stat}"
