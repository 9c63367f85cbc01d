"""``dry_run=true``: print every cell a sweep would run, which are done, their NFE and estimated time, and check that
data and checkpoints are present, without sampling anything."""

from __future__ import annotations

from omegaconf import DictConfig

from . import cells, tracking
from .checkpoints import availability
from .datasets import check_available


def _data_status(cfg: DictConfig) -> tuple[bool, str]:
    if cfg.job.name == "sample":
        from .fid import reference_statistics_path

        try:
            stats = reference_statistics_path(
                cfg.dataset.fid_reference,
                cfg.fid.feature_extractor,
                feature_extractor_weights_path=cfg.fid.get("weights_path"),
                datasets_root=cfg.dataset.get("root"),
            )
        except Exception:  # noqa: BLE001 - an unknown reference is reported by check_available below
            stats = None
        if stats is not None and stats.is_file():
            return True, f"reference statistics cached ({stats.name})"
        problem = check_available(cfg.dataset, cfg.dataset.train_split)
        return (problem is None), (problem or f"{cfg.dataset.fid_reference} data present")
    if cfg.job.name == "recon":
        problem = check_available(cfg.dataset, cfg.dataset.test_split)
        return (problem is None), (problem or f"{cfg.dataset.name} {cfg.dataset.test_split} data present")
    return True, "no data needed"


def _estimate_seconds(cfg: DictConfig, uri: str, nfe: int) -> float | None:
    """N x NFE x (seconds per image per NFE) from the newest finished timing run of this dataset and model."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    found = client.search_runs(
        [exp.experiment_id],
        filter_string=(
            f"params.job = 'timing' and params.dataset = '{cfg.dataset.name}' and params.model = '{cfg.model.name}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        return None
    per_image_nfe = found[0].data.metrics["seconds_per_nfe"] / int(found[0].data.params["batch_size"])
    images = int(cfg.N) * (2 if cfg.job.name == "recon" else 1)
    return images * nfe * per_image_nfe


def describe(cfg: DictConfig) -> dict:
    uri = tracking.tracking_uri(cfg.tracking)
    nfe = cells.nfe_of(cfg)
    done = tracking.finished_run(uri, cfg.tracking.experiment, cells.cell_key(cfg))
    ckpt_ok, ckpt = availability(cfg.model.checkpoint.name, bool(cfg.model.checkpoint.ema), cfg.model.checkpoint.path)
    data_ok, data = _data_status(cfg)
    seconds = None if done else _estimate_seconds(cfg, uri, nfe)
    return {
        "name": cells.run_name(cfg),
        "nfe": nfe,
        "done": done.info.run_id if done else None,
        "estimate": seconds,
        "ready": ckpt_ok and data_ok,
        "checkpoint": ckpt,
        "data": data,
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "time unknown (run job=timing first)"
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def print_plan(configs: list[DictConfig]) -> int:
    """Print one line per cell and a summary; return the number of cells that are not ready (missing inputs)."""
    rows = [describe(cfg) for cfg in configs]
    missing = 0
    for row in rows:
        if row["done"]:
            state = f"done (run {row['done']})"
        elif row["ready"]:
            state = f"to run, {_duration(row['estimate'])}"
        else:
            state = "MISSING inputs"
            missing += 1
        print(f"{row['name']}: NFE {row['nfe']}, {state}")
        if not row["done"]:
            print(f"    checkpoint: {row['checkpoint']}")
            print(f"    data: {row['data']}")
    todo = [r for r in rows if not r["done"]]
    known = [r["estimate"] for r in todo if r["estimate"] is not None]
    total = _duration(sum(known)) if known and len(known) == len(todo) else "unknown"
    print(f"{len(rows)} cells: {len(rows) - len(todo)} done, {len(todo)} to run ({missing} missing inputs); estimated time {total}")
    return missing
