"""The only door to MLflow: the tracking store and its URI, resolved once and shown without secrets (store), the
SQLite store's creation and migration under a lock (sqlite), credentials kept out of every record (credentials), one
run per cell under a sweep's parent run, and orphaned runs. Imports only ``harness.core``."""
