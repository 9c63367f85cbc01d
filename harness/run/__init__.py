"""One cell: its ``Cell`` and inputs, its checks (preflight, disk), its run under its claim (runner,
cell_claim, signals, outcome), its images in resumable shards (generate, shards, parts) and its jobs (registry, jobs).
Imports the layers below (metrics, models, data, diffusion, tracking, core), never the sweep or the report."""
