"""The jobs a cell can run, by name: ``sample`` (Tables 1 and 3), ``recon`` (Table 2), ``timing`` (Figure 4),
``figures`` (Figures 5 and 6)."""

from harness.run.jobs import figures, recon, sample, timing

JOBS = {"sample": sample.run, "recon": recon.run, "timing": timing.run, "figures": figures.run}
