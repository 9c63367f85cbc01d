"""Orchestration: one cell's run from start to end (runner), a multirun as a whole (callbacks: checked before any
cell, a parent run, a summary), the local worker launcher (launcher), the dry run (dryrun), one claim per cell between
processes (cell_claim), signals (signals) and the folders a cell writes checked writable first (writable). The Hydra
plugin shim that makes the launcher and sweeper instantiable is ``hydra_plugins.ddim_harness``. May import every layer
below it, the report included (the dry run plans from a pilot store's claims)."""
