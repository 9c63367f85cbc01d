"""A multirun as a whole: its plan (plan: overrides parsed once into jobs, each built into its Cell and named), the
sweeper (plan, check, launch, summarise, on Hydra's public Sweeper API), its parent run (parent) and the local worker
launcher (launcher). What one cell does is harness.run's. The Hydra plugin shim that makes the launcher and sweeper
instantiable is ``hydra_plugins.ddim_harness``. May import every layer below it, the report included (a dry run's
planner lines)."""
