"""The SQLite store's file: checked writable by a real write probe (seconds, not MLflow's minutes of retries), and
opened first in each process under a lock beside it, since MLflow migrates a new database with no lock between
processes (two at once fail, and can leave alembic's ``_alembic_tmp_*`` tables, dropped here)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import ExitStack
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.locks import file_lock

_READY: set[str] = set()  # the stores this process has opened (migrated or found current)
_WRITABLE: set[str] = set()  # the stores this process found writable


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///<path>`` store URI; None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_writable(database: Path, shown: str, setting: str) -> None:
    """Raise one HarnessError naming the fix unless the database's folder takes new files and the database (if it
    exists) opens for writing. Both by trying: permission bits do not stop root, a read-only mount or an immutable
    folder does."""
    folder = database.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{database.name}.probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise HarnessError(
            f"The tracking store {shown} cannot be written: its folder {folder} is read-only or not writable "
            f"({err.strerror or err}); SQLite writes its journal beside the database. Make the folder writable, or "
            f"point {setting} at a writable place.") from None
    if database.exists():
        try:
            with open(database, "r+b"):
                pass
        except OSError as err:
            raise HarnessError(
                f"The tracking store {shown} cannot be written: the database file is read-only "
                f"({err.strerror or err}). Make it writable (chmod u+w, chattr -i), or point {setting} at a "
                f"writable store.") from None


def _drop_stale_migration_tables(database: Path) -> None:
    """Drop alembic's ``_alembic_tmp_*`` tables: under the lock, no migration is running, so they are leftovers."""
    if not database.is_file() or database.stat().st_size == 0:
        return
    with sqlite3.connect(database, timeout=30) as db:
        stale = [name for (name,) in db.execute(
            "select name from sqlite_master where type = 'table' and name like '\\_alembic\\_tmp\\_%' escape '\\'")]
        for name in stale:
            db.execute(f'drop table "{name}"')
    db.close()


def ready(uri: str, shown: str, setting: str) -> None:
    """Open the SQLite store at ``uri`` in this process, its schema created or migrated under the store's lock (once
    per process and store; later calls return at once). A store in a folder where no lock file can be made (a
    read-only copy) is opened as it is: nothing can migrate it, and reading it needs no lock."""
    if uri in _READY:
        return
    import mlflow  # heavy: imported by the first use of a store, like every MLflow call here

    database = sqlite_path(uri)
    with ExitStack() as held:
        try:
            held.enter_context(file_lock(database.with_name(database.name + ".lock")))
        except OSError:
            if not database.exists():
                check_writable(database, shown, setting)  # says why the store cannot be created
        else:
            _drop_stale_migration_tables(database)
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # opens the store: migrates it
    _READY.add(uri)


def writable(uri: str, shown: str, setting: str) -> None:
    """``check_writable`` for the store at ``uri``, once per process (what every writer calls first)."""
    if uri not in _WRITABLE:
        check_writable(sqlite_path(uri), shown, setting)
        _WRITABLE.add(uri)
