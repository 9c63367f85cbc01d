"""One cell: the typed, validated ``Cell`` (cell) with the content of its input files (inputs), the files it reads
checked before any sampling (preflight), the folders it writes checked writable (writable), its run from start to end
(runner) under its claim (cell_claim) and the stop signals (signals), its ``Outcome`` (outcome), its dry-run line
(dryrun), its images sampled into resumable shards (generate, shards), a cell split into parts (parts), and the jobs a
cell runs (jobs: sample, recon, timing, figures). Imports the layers below (metrics, models, data, diffusion, tracking,
core), never the sweep or the report."""
