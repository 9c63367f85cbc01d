"""The reproduction report: ``python -m harness.report`` reads the harness's FINISHED MLflow runs (newest run per
cell) and writes into ``reports/<name>/`` (or ``--out DIR``). It is a pure function of the store: it samples nothing.

* ``table1.*`` (FID by eta and S, one block per dataset), ``table2.*`` (reconstruction MSE by S), ``table3.*`` (LSUN
  FID, DDIM vs DDPM): ``.md`` and ``.csv`` as displayed (cells "measured (paper)", "-" not run, a dagger where a
  run's settings differ from its block's), ``_long.csv`` with the raw numbers and run ids, ``.tex`` (booktabs);
  ``tables.tex`` is a standalone LaTeX document that inputs the three.
* ``claims.md`` / ``claims.csv``: PASS / FAIL / not enough runs for each of the paper's qualitative claims, with the
  numbers behind it, and Kendall's tau between measured and paper values per table block.
* ``figure4_timing.{png,pdf}``: hours to sample 50k images vs NFE, log-log, fitted slopes;
  ``figure3_samples_<dataset>.{png,pdf}``: the runs' sample grids by (eta, S); ``figure5_consistency``,
  ``figure6_interpolation`` and ``figure6_interpolation_grid`` from the newest figures job
  (``python -m harness job=figures``).
* ``provenance.md`` / ``provenance_runs.csv``: the run behind every cell with N, seed, checkpoint sha256, feature
  extractor, device, git commit and date; duplicate and ignored runs.
* ``report.md`` (everything in one Markdown file) and ``index.html`` (everything in one self-contained page, figures
  embedded), both from the jinja2 templates in ``templates/``.

The paper's values come from ``paper_values.csv`` (Song, Meng, Ermon, ICLR 2021, Tables 1-3).
"""
