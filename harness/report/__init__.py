"""The reproduction report: ``python -m harness.report`` reads the harness's FINISHED MLflow runs (newest run per
cell) and writes into ``outputs/report/`` (or ``--out DIR``; ``--out reports/default`` rebuilds the checked-in one).
It is a pure function of the store: it samples nothing.

* ``table1.*`` (the headline metric by eta and S, one block per dataset, and a block per other metric),
  ``table2.*`` (reconstruction MSE by S), ``table3.*`` (LSUN FID, DDIM vs DDPM), DDIM-family runs only: ``.md`` and
  ``.csv`` as displayed (cells "mean ± 95% half-width (paper)", a double dagger when measured once, "-" not run, a
  dagger where a run's settings differ from its block's), ``_long.csv`` with every number (mean, interval, std,
  min, K, each repeat) and run ids, ``.tex`` (booktabs); ``tables.tex`` inputs the three. ``metrics_long.csv`` is
  the long tidy frame of every logged metric.
* ``claims.md`` / ``claims.csv``: each of the paper's claims per dataset and metric, PASS / FAIL / within noise /
  not enough repeats / not enough data, decided on paired differences over repeats, with the numbers and interval
  behind every check; Kendall's tau between measured and paper values per table block.
* Samplers at equal NFE (``samplers_long.csv``, ``sampler_orders.csv``): the headline metric by sampler and NFE and,
  on exact-score datasets, each deterministic sampler's measured order beside its theoretical one.
* Figures (PNG and PDF): ``figure4_timing`` (hours for 50k images vs NFE, log-log), ``figure_metrics_<dataset>`` and
  ``figure_samplers_<dataset>`` (each metric against NFE per eta / per sampler, 95% error bars),
  ``figure3_samples_<dataset>`` (the runs' sample grids), ``figure5_consistency``, ``figure6_interpolation`` and
  ``figure6_interpolation_grid`` from the newest figures job (``python -m harness job=figures``).
* ``provenance.md`` / ``provenance_runs.csv``: the run behind every cell with N, seed, checkpoint sha256, feature
  extractor, device, git commit and date; duplicate, ignored runs and non-finite values.
* ``report.md`` (everything in one Markdown file) and ``index.html`` (one self-contained page, figures embedded),
  both from the jinja2 templates in ``templates/``.

The paper's values come from ``paper_values.csv`` (Song, Meng, Ermon, ICLR 2021, Tables 1-3).
"""
