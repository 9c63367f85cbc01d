"""A multirun as a whole: its plan, the sweeper (plan, check, launch, summarise), its parent run and the launchers
(local workers, Slurm). What one cell does is harness.run's. May import every layer below it."""
