"""The only door to MLflow: the store and its URI (store), the SQLite file's creation under a lock (sqlite), and
credentials kept out of every record (credentials). Imports only ``harness.core``."""
