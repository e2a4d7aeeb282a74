"""Opening a database: creating it, checking and migrating its schema, transactions, clear errors.

``connect`` refuses, with an ``AuditError`` that says what to do, a path whose folder cannot be made,
a file that is not DuckDB (left byte-identical), a DuckDB file of another application, a file written
by a newer schema version, a file locked by another process, and a write that fails mid-transaction
(rolled back, so the results stored before are intact). A new file gets the schema of
``tasks.store.schema`` (version 7); an older one opened for writing is migrated in place.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from tasks import __version__
from tasks.errors import AuditError
from tasks.store.schema import DDL, MIGRATIONS, SCHEMA_VERSION

READ_MEMORY_LIMIT = "2GB"
"""DuckDB's memory on a read-only connection (the report's): a larger sort, e.g. the 54 million rows of the
``metrics`` view at 100,000 examples, spills to the process's private temporary folder (``spill_folder``; never
beside the file, whose folder may be read-only) instead of holding about 14 GB."""

_NOT_OURS_FIX = "pass a database written by attention-audit, or a new path with --db; the file was left untouched"


@contextmanager
def connect(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (creating if needed) an attention-audit database, checking its schema version.

    Raises:
        AuditError: The file is not a DuckDB database, belongs to another application, was written by
            a newer schema version, is locked by another process, or its folder cannot be written.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise AuditError(f"there is no database at {path}", "run an audit first, or pass the right --db")
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AuditError(
                f"cannot create the folder {path.parent} for the database: {error.strerror}",
                "choose a writable location with --db",
            ) from error
    connection = _open(path, read_only)
    try:
        _check_schema(connection, path, read_only)
        yield connection
    except (duckdb.IOException, duckdb.TransactionException) as error:
        if isinstance(error, duckdb.TransactionException) and "write" not in str(error).lower():
            raise
        reason = str(error).splitlines()[0]
        full = "space" in reason.lower()
        raise AuditError(
            f"writing to the database {path} failed: {reason}. The transaction was rolled back; the results "
            "stored before are intact",
            "free disk space, then run the same command again to resume"
            if full
            else "check that the file's disk is writable, then run the same command again to resume",
        ) from error
    finally:
        connection.close()


SPILL_PREFIX = "attention-audit-duckdb-"
"""Start of a spill folder's name in the temporary directory, followed by its process id and a dash."""


@functools.cache
def spill_folder() -> str:
    """The folder this process's read-only connections spill into, removed when the process exits.

    One per process: DuckDB refuses a second connection to an open file with a different configuration.
    A process that ends without running its exit handlers (killed, or ``os._exit`` after Ctrl-C) leaves
    its folder; the next process's first read-only connection removes it (``remove_orphaned_spill_folders``).
    """
    remove_orphaned_spill_folders(Path(tempfile.gettempdir()))
    folder = tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def remove_orphaned_spill_folders(parent: Path) -> list[Path]:
    """Remove the spill folders in ``parent`` whose process has ended; returns those removed.

    A folder is ``SPILL_PREFIX`` + process id + ``-`` + a random part; one whose process still runs, or
    whose process cannot be checked (another user's), is kept, as is anything not named that way.
    """
    removed = []
    for folder in parent.glob(f"{SPILL_PREFIX}*-*"):
        pid = folder.name.removeprefix(SPILL_PREFIX).split("-", 1)[0]
        if pid.isdigit() and folder.is_dir() and not _process_runs(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _process_runs(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts as running: it cannot be checked)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, with its errors (lock, permission, not a database) turned into ``AuditError``.

    A read-only connection gets ``READ_MEMORY_LIMIT`` and spills into ``spill_folder()``.
    """
    config: dict[str, str | bool | int | float | list[str]] = (
        {"memory_limit": READ_MEMORY_LIMIT, "temp_directory": spill_folder()} if read_only else {}
    )
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as error:
        message = str(error)
        if "lock" in message.lower():
            raise AuditError(
                f"the database {path} is in use by another process ({message.splitlines()[0]})",
                "wait for the other audit to finish, or write this one to another file with --db",
            ) from error
        if "permission" in message.lower() or "read-only" in message.lower():
            raise AuditError(
                f"cannot write the database {path}: {message.splitlines()[0]}",
                "choose a writable location with --db",
            ) from error
        raise AuditError(
            f"{path} is not a readable DuckDB database ({message.splitlines()[0]})", _NOT_OURS_FIX
        ) from error
    except duckdb.Error as error:
        raise AuditError(
            f"{path} is not a readable DuckDB database ({str(error).splitlines()[0]})", _NOT_OURS_FIX
        ) from error


def _check_schema(connection: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
    """Refuse a foreign or newer file; migrate an older one (when writing); create a new one's schema."""
    tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if tables and "schema_info" not in tables:
        raise AuditError(
            f"{path} is a DuckDB database of another application (tables: {', '.join(sorted(tables)[:5])})",
            "pass a new path with --db; the existing database was left untouched",
        )
    if "schema_info" in tables:
        row = connection.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise AuditError(
                f"{path} was written by a newer attention-audit (schema {version}; this one reads {SCHEMA_VERSION})",
                "upgrade attention-audit, or write to a new database with --db",
            )
        if version < SCHEMA_VERSION and not read_only:
            _migrate(connection, version)
        return
    if read_only:
        raise AuditError(f"{path} holds no attention-audit results", "run an audit first, or pass the right --db")
    with transaction(connection):
        for statement in DDL:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_info VALUES ('schema_version', ?), ('created_by', ?)",
            [str(SCHEMA_VERSION), f"attention-audit {__version__}"],
        )


def _migrate(connection: duckdb.DuckDBPyConnection, version: int) -> None:
    """Bring an older schema up to ``SCHEMA_VERSION``, one step per version, in one transaction."""
    with transaction(connection):
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS.get(step, ()):
                connection.execute(statement)
        connection.execute("UPDATE schema_info SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All statements inside commit together or not at all."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        try:
            connection.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a connection that broke mid-transaction has already discarded it
        raise
    connection.execute("COMMIT")
