"""The trial ledger: every backtest is a trial of a study, so that a Sharpe picked from many is
deflated by how many there were (Bailey & López de Prado 2014) and a study's trials can be tested
for backtest overfitting (CSCV, Bailey, Borwein, López de Prado & Zhu 2017).

One SQLite file, `$TRADESIM_HOME/trials.sqlite`, safe for concurrent runs (WAL, a busy timeout,
inserts that ignore a trial already there). A study is the data fingerprint, tickers and test
period unless `--study NAME` names one; a trial is the hash of the resolved configuration, so
repeating a run adds nothing. Each trial keeps its daily returns.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.evidence.significance import deflated_sharpe, moments
from tradesim.sqlite_files import connect_readonly

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (study TEXT PRIMARY KEY, name TEXT, description TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    study TEXT NOT NULL, trial TEXT NOT NULL, created_at TEXT NOT NULL, label TEXT NOT NULL, config TEXT NOT NULL,
    sharpe REAL, sharpe_low REAL, sharpe_high REAL, observations INTEGER NOT NULL, returns TEXT NOT NULL,
    PRIMARY KEY (study, trial)
);
"""
# What does not change a run's returns: where it is written, caches, how its evidence is computed.
NOT_PART_OF_A_TRIAL = (
    "out", "llm_cache", "reuse_decisions", "sig_reps", "study", "device", "model_cutoffs", "cutoff_embargo_days", "require_post_cutoff", "seeds",
)
PBO_SPLITS = 16


def ledger_path() -> Path:
    return tradesim_home() / "trials.sqlite"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def study_of(name: str | None, fingerprint: str, tickers: tuple[str, ...], first: str, last: str) -> tuple[str, dict[str, Any]]:
    """(the study's id, what it is): a name given, or the data, tickers and test period."""
    description = {"data": fingerprint, "tickers": list(tickers), "first_decision": first, "last_session": last}
    if name:
        return f"name:{name}", {"name": name}
    return _digest(description), description


def trial_of(config: dict[str, Any], fingerprint: str, resolved: dict[str, Any]) -> str:
    """The trial's id: the resolved configuration, without what cannot change its returns."""
    kept = {k: v for k, v in config.items() if k not in NOT_PART_OF_A_TRIAL}
    return _digest({"config": kept, "data": fingerprint, "resolved": resolved})


@dataclass(frozen=True)
class Trial:
    trial: str
    created_at: str
    label: str
    config: dict[str, Any]
    sharpe: float | None  # annual
    sharpe_low: float | None
    sharpe_high: float | None
    returns: pd.Series


def _connect_for_writing(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(SCHEMA)
    return connection


def _row_trial(row) -> Trial:
    stored = json.loads(row[9])
    returns = pd.Series(stored["returns"], index=pd.DatetimeIndex(stored["dates"]), dtype=float)
    return Trial(row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], returns)


COLUMNS = "study, trial, created_at, label, config, sharpe, sharpe_low, sharpe_high, observations, returns"


def record(study: str, description: dict[str, Any], trial: str, label: str, config: dict[str, Any],
           returns: pd.Series, sharpe: float | None, interval: list[float] | None, path: Path | None = None) -> bool:
    """Add the trial to its study (nothing when it is there already). False: the ledger cannot be
    written (a read-only home); the caller says so."""
    path = path or ledger_path()
    stored = json.dumps({"dates": [str(d.date()) for d in returns.index], "returns": [float(r) for r in returns]})
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        connection = _connect_for_writing(path)
    except (sqlite3.OperationalError, OSError):
        return False
    try:
        with connection:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(
                "INSERT OR IGNORE INTO studies VALUES (?, ?, ?, ?)", (study, description.get("name"), json.dumps(description), now)
            )
            connection.execute(
                f"INSERT OR IGNORE INTO trials ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (study, trial, now, label, json.dumps(config, sort_keys=True, default=str), sharpe,
                 None if interval is None else interval[0], None if interval is None else interval[1], len(returns), stored),
            )
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()
    return True


def _reader(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    try:
        return connect_readonly(path)
    except (TradesimError, sqlite3.DatabaseError):
        return None


def trials(study: str, path: Path | None = None) -> list[Trial]:
    connection = _reader(path or ledger_path())
    if connection is None:
        return []
    try:
        rows = connection.execute(f"SELECT {COLUMNS} FROM trials WHERE study = ? ORDER BY created_at, trial", (study,)).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()
    return [_row_trial(row) for row in rows]


def studies(path: Path | None = None) -> list[dict[str, Any]]:
    """Every study with its number of trials and best Sharpe, newest first."""
    connection = _reader(path or ledger_path())
    if connection is None:
        return []
    try:
        rows = connection.execute(
            "SELECT s.study, s.name, s.description, s.created_at, COUNT(t.trial), MAX(t.sharpe), MAX(t.created_at) "
            "FROM studies s LEFT JOIN trials t ON t.study = s.study GROUP BY s.study ORDER BY MAX(t.created_at) DESC"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        connection.close()
    return [
        {"study": r[0], "name": r[1], "description": json.loads(r[2]), "created_at": r[3], "trials": r[4], "best_sharpe": r[5], "last_trial": r[6]}
        for r in rows
    ]


def studies_table(path: Path | None = None) -> str:
    """One line per study, newest first: its trials, best Sharpe, last trial and what it is."""
    known = studies(path)
    if not known:
        return f"no trials recorded in {path or ledger_path()}"
    lines = []
    for entry in known:
        what = "named with --study" if entry["name"] else ", ".join(
            f"{key} {','.join(value) if isinstance(value, list) else value}" for key, value in entry["description"].items()
        )
        best = "n/a" if entry["best_sharpe"] is None else f"{entry['best_sharpe']:.2f}"
        lines.append(f"{entry['study'].removeprefix('name:')[:24]}  {entry['trials']} trials, best Sharpe {best}, last {entry['last_trial']}: {what}")
    return "\n".join(lines)


def find_study(name: str, path: Path | None = None) -> str:
    """A study's id from its name, its id, or the start of its id (unique)."""
    known = studies(path)
    exact = [s["study"] for s in known if s["name"] == name or s["study"] == name]
    if exact:
        return exact[0]
    matches = [s["study"] for s in known if s["study"].startswith(name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise TradesimError(f"--study {name}: no such study in {path or ledger_path()} (`tradesim trials` lists them)")
    raise TradesimError(f"--study {name}: matches {len(matches)} studies; give more of its id")


def deflation(sharpe_per_period: float, skew: float, kurtosis: float, observations: int, study_trials: list[Trial]) -> dict[str, Any]:
    """The deflated Sharpe of one trial among the study's trials, with how many there were and the
    variance of their (per-period) Sharpes; where this one ranks among them."""
    sharpes = np.array([moments(t.returns.to_numpy())[0] for t in study_trials], dtype=float)
    sharpes = sharpes[np.isfinite(sharpes)]
    count = len(study_trials)
    variance = float(sharpes.var(ddof=1)) if len(sharpes) > 1 else 0.0
    rank = int((sharpes > sharpe_per_period + 1e-15).sum()) + 1
    value = deflated_sharpe(sharpe_per_period, skew, kurtosis, observations, count, variance) if math.isfinite(sharpe_per_period) else None
    return {"trials": count, "sharpe_variance": variance, "rank": rank, "deflated_sharpe": value}


def deflation_of(trial: str, label: str, returns: pd.Series, risk_free_per_period: float, study_trials: list[Trial]) -> dict[str, Any]:
    """`deflation` of a trial's returns among the study's trials, counted among them even when it
    is not recorded (a read-only home, a replay)."""
    if trial not in {t.trial for t in study_trials}:
        study_trials = [*study_trials, Trial(trial, "", label, {}, None, None, None, returns)]
    per_period, skew, kurtosis, n = moments(returns.to_numpy() - risk_free_per_period)
    return deflation(per_period, skew, kurtosis, n, study_trials)


def trials_in_words(count: int, rank: int, study: str) -> str:
    """"best of 5 trials", "3rd best of 5 trials" or "the only trial", naming the study."""
    if count <= 1:
        return f"the only trial of study {study} so far: nothing was picked from others"
    place = "best" if rank == 1 else f"{rank}{'nd' if rank == 2 else 'rd' if rank == 3 else 'th'} best"
    return f"{place} of {count} trials of study {study}: the deflated Sharpe accounts for all {count}"


def returns_matrix(study_trials: list[Trial]) -> pd.DataFrame:
    """The trials' daily returns side by side, on the dates all of them have."""
    frame = pd.concat({t.trial: t.returns for t in study_trials}, axis=1, join="inner")
    return frame.dropna()


def probability_of_backtest_overfitting(returns: pd.DataFrame, splits: int = PBO_SPLITS) -> dict[str, Any]:
    """Combinatorially symmetric cross-validation: the rows are cut into `splits` blocks; for every
    half of them, the trial with the best in-sample Sharpe is ranked out of sample; PBO is the
    share of halves where it ranks at or below the median (logit <= 0)."""
    matrix = np.asarray(returns, dtype=float)
    rows, count = matrix.shape
    if count < 2:
        raise TradesimError("--pbo: needs at least 2 trials with returns on common dates")
    if splits < 2 or splits % 2:
        raise TradesimError(f"--pbo-splits: expected an even number of at least 2, got {splits}")
    if rows < 2 * splits:
        raise TradesimError(f"--pbo: the trials share {rows} dates, fewer than 2 per block of {splits} blocks")
    size = rows // splits
    blocks = matrix[rows - size * splits:].reshape(splits, size, count)
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)
    halves = np.array([c for c in itertools.combinations(range(splits), splits // 2)])
    chosen = np.zeros((len(halves), splits))
    chosen[np.arange(len(halves))[:, None], halves] = 1.0

    def sharpe(selector):
        n = selector.sum(axis=1, keepdims=True) * size
        mean = selector @ sums / n
        variance = (selector @ squares - n * mean**2) / (n - 1)
        return mean / np.sqrt(np.where(variance > 0, variance, np.nan))

    with np.errstate(invalid="ignore", divide="ignore"):  # a trial without variance in a half ranks last there
        inside, outside = (np.nan_to_num(sharpe(selector), nan=-np.inf) for selector in (chosen, 1 - chosen))
    best = np.argmax(inside, axis=1)
    ranks = (outside <= outside[np.arange(len(halves)), best][:, None]).sum(axis=1)  # 1 = worst, count = best
    omega = ranks / (count + 1)
    logits = np.log(omega / (1 - omega))
    return {
        "pbo": float((logits <= 0).mean()),
        "splits": splits,
        "combinations": int(len(halves)),
        "trials": int(count),
        "dates": int(rows),
        "logit_median": float(np.median(logits)),
    }


def _settings(trial: Trial) -> dict[str, Any]:
    """A trial's options and strategy parameters, flat."""
    config = dict(trial.config)
    return {**{k: v for k, v in config.items() if k != "params"}, **(config.get("params") or {})}


def _varied(study_trials: list[Trial]) -> set[str]:
    """The options and parameters whose values differ between the trials (what the study varied)."""
    values: dict[str, set[str]] = {}
    for t in study_trials:
        for key, value in _settings(t).items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True, default=str))
    return {key for key, seen in values.items() if len(seen) > 1 and key not in (*NOT_PART_OF_A_TRIAL, "strategy")}


def study_table(name: str, pbo_splits: int | None = None) -> str:
    """One study's trials, best Sharpe first: Sharpe, its 95% interval, the deflated Sharpe of
    each among all of them; with `pbo_splits`, the study's probability of backtest overfitting."""
    study = find_study(name)
    found = trials(study)
    lines = [f"study {study.removeprefix('name:')}: {len(found)} trials"]
    rows = []
    varied = _varied(found)
    for t in found:
        sharpe, skew, kurtosis, n = moments(t.returns.to_numpy())
        value = deflation(sharpe, skew, kurtosis, n, found)["deflated_sharpe"] if math.isfinite(sharpe) else None
        interval = "" if t.sharpe_low is None else f"[{t.sharpe_low:.2f}, {t.sharpe_high:.2f}]"
        label = " ".join([t.label, *(f"{k}={v}" for k, v in _settings(t).items() if k in varied)])
        rows.append((t.sharpe if t.sharpe is not None else -math.inf, [t.trial, label, "n/a" if t.sharpe is None else f"{t.sharpe:.2f}", interval, "n/a" if value is None else f"{value:.2f}", str(len(t.returns)), t.created_at]))
    header = ["trial", "label", "Sharpe", "95% interval", "DSR", "days", "recorded"]
    table = [header, *(row for _, row in sorted(rows, key=lambda item: -item[0]))]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))) for r in table]
    lines.insert(2, "-" * len(lines[1]))
    lines.append("DSR: deflated Sharpe, the probability of skill given every trial of the study (Bailey & López de Prado 2014)")
    if pbo_splits is not None:
        result = probability_of_backtest_overfitting(returns_matrix(found), pbo_splits)
        lines.append(
            f"probability of backtest overfitting: {result['pbo']:.2f} (CSCV over {result['trials']} trials, {result['dates']} common dates, "
            f"{result['splits']} blocks, {result['combinations']} combinations; the share of splits in which the best in-sample trial "
            "ranks at or below the median out of sample)"
        )
    return "\n".join(lines)
