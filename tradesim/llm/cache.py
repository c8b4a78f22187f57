"""The content-addressed decision cache: SQLite in WAL mode, safe for several processes at once.

Key: sha256 of canonical JSON of {fingerprint, request} (request = prompt and options, or prompt
and generation parameters). Value: the result plus latency and token counts. Entries are
committed after every model batch, so an interrupted run keeps what it computed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
import sys
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradesim.config import CACHE_MODES, tradesim_home
from tradesim.errors import TradesimError
from tradesim.sqlite_files import connect_readonly, writable
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_model ON entries (model);
CREATE TABLE IF NOT EXISTS usage (
    model TEXT PRIMARY KEY,
    hits INTEGER NOT NULL DEFAULT 0,
    misses INTEGER NOT NULL DEFAULT 0
);
"""


def _damaged(error: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not (or no longer) a database, as opposed to busy or locked."""
    return not isinstance(error, sqlite3.OperationalError) or "malformed" in str(error) or "not a database" in str(error)


TIMINGS = ("latency_s",)  # parts of a cached value that differ between two computations of one answer


def answer(value: dict[str, Any]) -> dict[str, Any]:
    """A cached value without its timings: what two computations of one request must agree on."""
    return {k: v for k, v in value.items() if k not in TIMINGS}


def default_cache_path() -> Path:
    return tradesim_home() / "llm-cache.sqlite"


def cache_key(fingerprint: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"fingerprint": fingerprint, "request": request}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class DecisionCache:
    """Batch lookups and inserts of model results keyed by content."""

    def __init__(self, path: Path | None = None, mode: str = "readwrite"):
        if mode not in CACHE_MODES:
            raise TradesimError(f"cache mode: expected one of {', '.join(CACHE_MODES)}, got {mode!r}")
        self.mode = mode
        self.path = Path(path) if path is not None else default_cache_path()
        self._connection: sqlite3.Connection | None = None

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            if self.mode == "readonly" and not self.path.exists():
                raise TradesimError(f"cache {self.path}: does not exist, and the cache mode is readonly")
            try:
                self._connection = self._open()
            except sqlite3.DatabaseError as error:
                if not _damaged(error):
                    raise
                self._set_aside(error)
                self._connection = self._open()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        """Connect and read the schema once (a damaged file fails here, not in the middle of a run).
        Readonly opens the file read-only, and as immutable on a read-only file system, where
        SQLite cannot create the shared-memory file a WAL database needs."""
        if self.mode == "readonly":
            return connect_readonly(self.path, timeout=60)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not writable(self.path):
                raise OSError(errno.EROFS, "read-only")
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout = 60000")
            connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(SCHEMA)
        except (OSError, sqlite3.OperationalError) as error:
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise
            raise TradesimError(
                f"cache {self.path}: cannot be written ({error}); read it with --llm-cache readonly, or run without it with --llm-cache off"
            ) from None
        return connection

    def _set_aside(self, error: Exception) -> None:
        """A cache is disposable: move a damaged file (and its WAL) aside, say so, and start afresh."""
        if self.mode == "readonly":
            raise TradesimError(f"cache {self.path}: damaged ({error}); the cache mode is readonly, so it cannot be set aside") from None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            part = Path(f"{self.path}{suffix}")
            if part.exists():
                part.replace(f"{self.path}.damaged-{stamp}{suffix}")
        print(f"warning: cache {self.path} was damaged ({error}): moved aside to {self.path.name}.damaged-{stamp}; starting an empty cache", file=sys.stderr)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached values among `keys` (missing keys are absent from the result)."""
        if self.mode == "off":
            return {}
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.connection.execute(
                f"SELECT key, value FROM entries WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put_many(self, model: str, fingerprint: str, kind: str, items: dict[str, dict[str, Any]]) -> None:
        if self.mode != "readwrite" or not items:
            return
        now = time.time()
        rows = [(key, model, fingerprint, kind, json.dumps(value, separators=(",", ":")), now) for key, value in items.items()]
        with self._transaction():
            self.connection.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows)

    def count_usage(self, model: str, hits: int, misses: int) -> None:
        if self.mode != "readwrite" or not (hits or misses):
            return
        with self._transaction():
            self.connection.execute(
                "INSERT INTO usage (model, hits, misses) VALUES (?, ?, ?) "
                "ON CONFLICT(model) DO UPDATE SET hits = hits + excluded.hits, misses = misses + excluded.misses",
                (model, hits, misses),
            )

    def stats(self) -> list[dict[str, Any]]:
        """Per model: entries, stored bytes, hits and misses counted so far."""
        if not self.path.exists():
            return []
        if not self.connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'usage'").fetchone():
            return []  # an empty file: never written by a run
        rows = self.connection.execute(
            "SELECT e.model, COUNT(*), SUM(LENGTH(e.value)), COALESCE(u.hits, 0), COALESCE(u.misses, 0) "
            "FROM entries e LEFT JOIN usage u ON u.model = e.model GROUP BY e.model ORDER BY e.model"
        ).fetchall()
        return [dict(zip(("model", "entries", "bytes", "hits", "misses"), row)) for row in rows]

    def clear(self, model: str | None = None) -> int:
        """Delete every entry, or those of one model spec; returns how many were deleted."""
        if not self.path.exists():
            return 0
        with self._transaction():
            if model is None:
                deleted = self.connection.execute("DELETE FROM entries").rowcount
                self.connection.execute("DELETE FROM usage")
            else:
                deleted = self.connection.execute("DELETE FROM entries WHERE model = ?", (model,)).rowcount
                self.connection.execute("DELETE FROM usage WHERE model = ?", (model,))
        self.connection.execute("VACUUM")
        return deleted

    def file_size(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())

    @contextmanager
    def _transaction(self):
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if "readonly" not in str(error):
                raise
            raise TradesimError(f"cache {self.path}: cannot be written ({error}); run with --llm-cache readonly or off") from None
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # ------------------------------------------------------------- shards of a sweep's workers
    def copy_to(self, target: Path) -> None:
        """A consistent copy of the cache (SQLite's backup; an empty cache where there is none yet):
        the snapshot a sweep's workers start their shards from."""
        target = Path(target)
        destination = sqlite3.connect(target)
        try:
            if self.path.exists():
                source = connect_readonly(self.path, timeout=60)
                try:
                    source.backup(destination)
                finally:
                    source.close()
            destination.executescript(SCHEMA)
            destination.execute("PRAGMA journal_mode = DELETE")
        finally:
            destination.close()

    def last_row(self) -> int:
        return int(self.connection.execute("SELECT COALESCE(MAX(rowid), 0) FROM entries").fetchone()[0])

    def rows_after(self, row: int) -> list[tuple]:
        """Entries added after rowid `row`: (rowid, key, model, fingerprint, kind, value, created_at)."""
        return self.connection.execute(
            "SELECT rowid, key, model, fingerprint, kind, value, created_at FROM entries WHERE rowid > ? ORDER BY rowid", (row,)
        ).fetchall()

    def merge(self, rows: Iterable[tuple], origin: str) -> tuple[int, list[dict[str, Any]]]:
        """Add a shard's entries (`rows_after`'s tuples). Keys are content addresses, so merging is the
        same in any order; a key already here with another answer (timings aside) is not replaced
        but returned as a conflict: the model answered one request two ways (nondeterminism).
        Returns (entries added, conflicts)."""
        added, conflicts = 0, []
        rows = list(rows)
        with self._transaction():
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                keys = [row[1] for row in chunk]
                known = dict(self.connection.execute(
                    f"SELECT key, value FROM entries WHERE key IN ({','.join('?' * len(keys))})", keys
                ).fetchall())
                for _, key, model, fingerprint, kind, value, created_at in chunk:
                    if key in known:
                        if answer(json.loads(known[key])) != answer(json.loads(value)):
                            conflicts.append({"key": key, "model": model, "kind": kind, "kept": answer(json.loads(known[key])),
                                              "other": answer(json.loads(value)), "from": origin})
                        continue
                    self.connection.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", (key, model, fingerprint, kind, value, created_at))
                    known[key] = value
                    added += 1
        return added, conflicts

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
