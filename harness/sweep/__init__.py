"""Orchestration: a multirun as a whole (sweeper: plan, check, launch, summarise, on Hydra's public Sweeper API), its plan
(plan: overrides parsed once into jobs, each built into its Cell and named), its parent run (parent), the local worker
launcher (launcher), one cell's run from start to end (runner), the dry run (dryrun), one claim per cell between
processes (cell_claim), signals (signals) and the folders a cell writes checked writable first (writable). The Hydra
plugin shim that makes the launcher and sweeper instantiable is ``hydra_plugins.ddim_harness``. May import every layer
below it, the report included (the dry run plans from a pilot store's claims)."""
