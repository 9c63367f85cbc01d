"""The jobs a cell can run, one module each with its registry entry ``JOB`` (harness.run.registry): ``sample``
(Tables 1 and 3), ``recon`` (Table 2), ``timing`` (Figure 4), ``figures`` (Figures 5 and 6)."""
