"""The content-addressed decision cache: SQLite in WAL mode, safe for several processes at once.

Key: sha256 of canonical JSON of {fingerprint, request} (request = prompt and options, or prompt
and generation parameters). Value: the result plus latency and token counts. Entries are
committed after every model batch, so an interrupted run keeps what it computed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradesim.config import CACHE_MODES, tradesim_home
from tradesim.errors import TradesimError
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout = 60000")
            if self.mode == "readwrite":
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.executescript(SCHEMA)
            self._connection = connection
        return self._connection

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
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
