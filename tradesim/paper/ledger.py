"""The paper account's state of record: one SQLite file (WAL, synchronous=FULL) and a head file.

Every processed session is one transaction that adds rows and never changes earlier ones. Each
session row carries a hash chain over everything stored for it, and `head.json` (written after the
commit) names the newest committed session and its chain: a ledger that lost committed sessions (a
deleted write-ahead log, a file copied back from before) or whose rows were altered no longer
matches, and is refused instead of silently starting over.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from tradesim.errors import TradesimError
from tradesim.sqlite_files import connect_readonly, writable

FORMAT = "tradesim-paper-2"
LEDGER = "ledger.sqlite"
HEAD = "head.json"
BOOKS = ("account", "benchmark")

# Walk-forward accounts: the state each later fold was fitted to, on the night its first session was
# processed (fold 0's is `fitted`). Made on opening where an older ledger lacks it.
REFITS = "CREATE TABLE IF NOT EXISTS refits(fold INTEGER PRIMARY KEY, session TEXT NOT NULL, blob BLOB NOT NULL, sha256 TEXT NOT NULL);"

# Broker accounts: every order intent with its deterministic client id, written before it is sent
# and updated from the broker's record (state: pending, unknown, the broker's status, not_sent);
# the drifts a person resolved (the differences, broker minus ledger, per ticker); and per-session
# adjustments that make the ledger the broker's (cash as the broker booked it, accepted drift).
# Made on opening where an older ledger lacks them; `adjustments` enters a session's hash chain
# only when it has rows, so older chains still verify.
BROKER_TABLES = """
CREATE TABLE IF NOT EXISTS broker_orders(client_id TEXT PRIMARY KEY, decided TEXT NOT NULL, fill_session TEXT NOT NULL, ticker TEXT NOT NULL,
    side TEXT NOT NULL, qty REAL NOT NULL, time_in_force TEXT NOT NULL, state TEXT NOT NULL, broker_id TEXT, filled_qty REAL NOT NULL,
    filled_avg_price REAL, reason TEXT, updated TEXT);
CREATE TABLE IF NOT EXISTS drifts(id TEXT PRIMARY KEY, differences TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS adjustments(session TEXT, book TEXT, ticker TEXT, kind TEXT, shares REAL NOT NULL, cash REAL NOT NULL,
    detail TEXT NOT NULL, PRIMARY KEY (session, book, ticker, kind));
"""

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fitted(id INTEGER PRIMARY KEY CHECK (id = 1), blob BLOB NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE epochs(epoch INTEGER PRIMARY KEY, from_session TEXT NOT NULL, fingerprint TEXT NOT NULL, parts TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE sessions(session TEXT PRIMARY KEY, epoch INTEGER NOT NULL, late INTEGER NOT NULL, next_session TEXT NOT NULL,
    cash REAL NOT NULL, equity REAL NOT NULL, benchmark_cash REAL NOT NULL, benchmark_equity REAL NOT NULL,
    carried BLOB NOT NULL, chain TEXT NOT NULL);
CREATE TABLE bars(session TEXT, ticker TEXT, raw_open REAL, raw_high REAL, raw_low REAL, raw_close REAL NOT NULL,
    volume REAL, adjustment_step REAL NOT NULL, PRIMARY KEY (session, ticker));
CREATE TABLE actions(session TEXT, book TEXT, ticker TEXT, kind TEXT NOT NULL, step REAL NOT NULL, dividend REAL NOT NULL,
    shares_before REAL NOT NULL, shares_after REAL NOT NULL, cash REAL NOT NULL, PRIMARY KEY (session, book, ticker));
CREATE TABLE decisions(session TEXT, ticker TEXT, weight REAL NOT NULL, action TEXT NOT NULL, log TEXT NOT NULL, PRIMARY KEY (session, ticker));
CREATE TABLE orders(id TEXT PRIMARY KEY, book TEXT NOT NULL, decided TEXT NOT NULL, fill_session TEXT NOT NULL,
    ticker TEXT NOT NULL, target REAL NOT NULL, reason TEXT NOT NULL);
CREATE TABLE fills(order_id TEXT PRIMARY KEY, session TEXT NOT NULL, book TEXT NOT NULL, ticker TEXT NOT NULL, side TEXT NOT NULL,
    shares REAL NOT NULL, price REAL NOT NULL, fees REAL NOT NULL);
CREATE TABLE positions(session TEXT, book TEXT, ticker TEXT, shares REAL NOT NULL, PRIMARY KEY (session, book, ticker));
CREATE TABLE side_rows(session TEXT, name TEXT, position INTEGER, row TEXT NOT NULL, PRIMARY KEY (session, name, position));
CREATE TABLE events(id TEXT PRIMARY KEY, session TEXT NOT NULL, ticker TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT);
"""
# Per-session tables and the column that dates their rows (orders: the session that decided them;
# side_rows: a strategy's side tables, such as TradExpert's reports and comparisons, one JSON row each).
SESSION_TABLES = {"bars": "session", "actions": "session", "decisions": "session", "orders": "decided", "fills": "session", "positions": "session",
                  "side_rows": "session", "adjustments": "session"}
OPTIONAL_IN_CHAIN = ("adjustments",)  # hashed only when a session has such rows (older ledgers have none)


class LedgerCorrupt(TradesimError):
    """The state file is damaged or lost committed sessions: exit 2, never a fresh start."""

    exit_code = 2


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def _rows(connection: sqlite3.Connection, table: str, column: str, session: str) -> list[tuple]:
    if table in OPTIONAL_IN_CHAIN and not has_table(connection, table):  # an older ledger, opened read-only
        return []
    return connection.execute(f"SELECT * FROM {table} WHERE {column} = ? ORDER BY 1, 2, 3", (session,)).fetchall()


def has_table(connection: sqlite3.Connection, table: str) -> bool:
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def chain_of(previous: str, session_row: tuple, tables: dict[str, list[tuple]]) -> str:
    """The hash of one session's rows, chained to the previous session's."""
    digest = hashlib.sha256(previous.encode())
    digest.update(repr(session_row).encode())
    for table in SESSION_TABLES:
        if table in OPTIONAL_IN_CHAIN and not tables.get(table):
            continue
        digest.update(table.encode())
        digest.update(repr(tables.get(table, [])).encode())
    return digest.hexdigest()


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class Ledger:
    def __init__(self, directory: Path, connection: sqlite3.Connection):
        self.directory = directory
        self.connection = connection

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, directory: Path, meta: dict[str, Any], fitted: bytes, epoch_parts: dict[str, str], inception: str) -> Ledger:
        directory.mkdir(parents=True)
        connection = _connect(directory / LEDGER)
        ledger = cls(directory, connection)
        connection.executescript(SCHEMA + REFITS + BROKER_TABLES)
        with ledger.transaction():
            connection.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in {"format": FORMAT, **meta}.items()])
            connection.execute("INSERT INTO fitted VALUES (1, ?, ?)", (fitted, hashlib.sha256(fitted).hexdigest()))
            ledger.add_epoch(1, inception, epoch_parts, "inception")
        ledger.write_head()
        return ledger

    @classmethod
    def open(cls, directory: Path, readonly: bool = False) -> Ledger:
        """Open and check the ledger; `readonly` (status, orders, report, verify) writes nothing and
        works on a read-only disk."""
        path = directory / LEDGER
        if not readonly and path.exists() and not writable(path):
            raise TradesimError(f"{path}: cannot be written (read-only); `paper status`, `orders`, `report` and `verify` can read it, `paper run` needs it writable")
        if not path.exists():
            raise TradesimError(f"{directory}: no paper account here (`tradesim paper list` shows the accounts)")
        if path.stat().st_size == 0:
            raise LedgerCorrupt(f"{path}: the ledger is empty (truncated?); restore it from a backup, it is never re-initialised")
        try:
            connection = connect_readonly(path) if readonly else _connect(path)
            check = connection.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            found = json.loads(connection.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()[0])
        except (sqlite3.DatabaseError, TypeError, json.JSONDecodeError) as error:
            raise LedgerCorrupt(f"{path}: the ledger is corrupt ({error}); restore it from a backup, it is never re-initialised") from None
        if found != FORMAT:
            older = " (an older tradesim made it: make the account again)" if str(found).startswith("tradesim-paper-") else ""
            raise LedgerCorrupt(f"{path}: not a tradesim paper ledger of format {FORMAT} (found {found!r}){older}")
        if not readonly:
            connection.executescript(REFITS + BROKER_TABLES)
        ledger = cls(directory, connection)
        ledger.check_head()
        return ledger

    def check_head(self) -> None:
        """The newest session the head file names must be in the ledger with the same chain."""
        head_path = self.directory / HEAD
        try:
            head = json.loads(head_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise LedgerCorrupt(f"{head_path}: unreadable ({error}); the ledger cannot be checked against it") from None
        if head.get("session") is None:
            return
        row = self.connection.execute("SELECT chain FROM sessions WHERE session = ?", (head["session"],)).fetchone()
        if row is None:
            last = self.last_session()
            raise LedgerCorrupt(
                f"{self.directory / LEDGER}: session {head['session']} was committed but is not in the ledger (its newest is {last}); "
                "the write-ahead log was lost or the file was replaced. Restore it from a backup, it is never re-initialised"
            )
        if row[0] != head["chain"]:
            raise LedgerCorrupt(f"{self.directory / LEDGER}: session {head['session']} differs from what was committed (its hash chain changed)")

    def write_head(self) -> None:
        last = self.connection.execute("SELECT session, chain FROM sessions ORDER BY session DESC LIMIT 1").fetchone()
        head = {"session": last[0], "chain": last[1]} if last else {"session": None, "chain": None}
        write_atomically(self.directory / HEAD, json.dumps(head) + "\n")

    def close(self) -> None:
        self.connection.close()

    # ------------------------------------------------------------------ writing
    def transaction(self):
        connection = self.connection

        class Transaction:
            def __enter__(self):
                connection.execute("BEGIN IMMEDIATE")

            def __exit__(self, kind, value, traceback):
                connection.execute("COMMIT" if kind is None else "ROLLBACK")

        return Transaction()

    def add_epoch(self, epoch: int, from_session: str, parts: dict[str, str], reason: str) -> None:
        self.connection.execute(
            "INSERT INTO epochs VALUES (?, ?, ?, ?, ?)", (epoch, from_session, fingerprint_of(parts), json.dumps(parts, sort_keys=True), reason)
        )

    def insert(self, table: str, rows: Iterable[tuple]) -> None:
        rows = list(rows)
        if rows:
            self.connection.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)

    def add_session(self, session_row: tuple) -> None:
        """The session row, last in its transaction: its chain covers the rows added before it."""
        session = session_row[0]
        tables = {table: _rows(self.connection, table, column, session) for table, column in SESSION_TABLES.items()}
        chain = chain_of(self.last_chain(), session_row, tables)
        self.connection.execute(f"INSERT INTO sessions VALUES ({', '.join('?' * (len(session_row) + 1))})", (*session_row, chain))

    # ------------------------------------------------------------------ reading
    def meta(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self.connection.execute("SELECT key, value FROM meta")}

    def fitted(self) -> bytes:
        blob, sha = self.connection.execute("SELECT blob, sha256 FROM fitted").fetchone()
        if hashlib.sha256(blob).hexdigest() != sha:
            raise LedgerCorrupt(f"{self.directory / LEDGER}: the stored fitted state does not match its hash")
        return blob

    def add_refit(self, fold: int, session: str, blob: bytes) -> None:
        self.connection.execute("INSERT INTO refits VALUES (?, ?, ?, ?)", (fold, session, blob, hashlib.sha256(blob).hexdigest()))

    def refits(self) -> dict[int, bytes]:
        """Fold -> the fitted state stored for it (walk-forward accounts; none for others)."""
        if not has_table(self.connection, "refits"):
            return {}
        states = {}
        for fold, blob, sha in self.connection.execute("SELECT fold, blob, sha256 FROM refits ORDER BY fold"):
            if hashlib.sha256(blob).hexdigest() != sha:
                raise LedgerCorrupt(f"{self.directory / LEDGER}: the fitted state stored for fold {fold} does not match its hash")
            states[fold] = blob
        return states

    def epoch(self) -> tuple[int, str, dict[str, str]]:
        epoch, fingerprint, parts = self.connection.execute("SELECT epoch, fingerprint, parts FROM epochs ORDER BY epoch DESC LIMIT 1").fetchone()
        return epoch, fingerprint, json.loads(parts)

    def last_session(self) -> str | None:
        row = self.connection.execute("SELECT MAX(session) FROM sessions").fetchone()
        return row[0]

    def last_chain(self) -> str:
        row = self.connection.execute("SELECT chain FROM sessions ORDER BY session DESC LIMIT 1").fetchone()
        return row[0] if row else ""

    def session_row(self, session: str) -> sqlite3.Row | None:
        self.connection.row_factory = sqlite3.Row
        try:
            return self.connection.execute("SELECT * FROM sessions WHERE session = ?", (session,)).fetchone()
        finally:
            self.connection.row_factory = None

    def query(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        return self.connection.execute(sql, parameters).fetchall()

    def verify_chain(self) -> list[str]:
        """Problems found recomputing every session's hash chain (empty: none)."""
        problems, previous = [], ""
        for row in self.query("SELECT * FROM sessions ORDER BY session"):
            tables = {table: _rows(self.connection, table, column, row[0]) for table, column in SESSION_TABLES.items()}
            expected = chain_of(previous, tuple(row[:-1]), tables)
            if expected != row[-1]:
                problems.append(f"session {row[0]}: its rows do not match its hash chain")
                break
            previous = row[-1]
        return problems

    def dump(self) -> str:
        """Every row of every table, in key order: equal dumps, equal accounts."""
        lines = []
        for (table,) in self.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            for row in self.query(f"SELECT * FROM {table} ORDER BY 1, 2, 3" if table not in ("meta", "fitted", "refits", "drifts") else f"SELECT * FROM {table} ORDER BY 1"):
                lines.append(f"{table} {row!r}")
        return "\n".join(lines)


def fingerprint_of(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
