"""SQLite files tradesim keeps under $TRADESIM_HOME (the decision cache, paper ledgers): opened
for reading without writing anything, and asked whether they can be written."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from tradesim.errors import TradesimError


def connect_readonly(path: Path, timeout: float = 30) -> sqlite3.Connection:
    """Read-only, and as immutable where even a WAL database's shared-memory file cannot be made (a
    read-only disk, a directory the reader cannot write). A file that is no database raises
    sqlite3.DatabaseError; one that cannot be opened at all, a one-line TradesimError."""
    for flags in ("mode=ro", "immutable=1"):
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return connection
        except sqlite3.OperationalError:
            connection.close()
    raise TradesimError(f"{path}: cannot be opened for reading")


def writable(path: Path) -> bool:
    """Whether the file (if it exists) and its directory can be written: SQLite writes beside it."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
