"""The foundations every layer may use: the one exception type (errors), the names of everything logged and how the
report shows each metric (names), files on disk (files), where a job runs (runtime), progress output (progress),
where the configs are and a job's overrides read as settings (config), the entry points' error handling (cli) and
the one seam for injected test faults (faults). Imports nothing of the harness."""
