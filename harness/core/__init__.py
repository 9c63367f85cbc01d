"""The foundations every layer may use: errors, names, files, locks, processes, runtime, throughput, progress, console,
config, cli and the test-fault seam (faults). Imports nothing of the harness."""
