"""One cell: the typed, validated ``Cell`` (cell) with the content of its input files (inputs), the files it reads
checked before any sampling (preflight), its images sampled into resumable shards (generate, shards), a cell split
into parts (parts), and the jobs a cell runs (jobs: sample, recon, timing, figures). Imports the layers below
(metrics, models, data, diffusion, tracking, core), never the sweep or the report."""
