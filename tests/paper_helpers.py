"""Fixtures for paper accounts: bars on XNYS sessions with splits and dividends, configs, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from tradesim.cli import main


def xnys_sessions(start: str, count: int) -> pd.DatetimeIndex:
    import exchange_calendars

    calendar = exchange_calendars.get_calendar("XNYS", start="1990-01-01")
    return calendar.sessions_in_range(pd.Timestamp(start), pd.Timestamp(start) + pd.Timedelta(days=count * 2))[:count]


def printed_bars(tickers=("AAA", "BBB"), start="2023-01-03", sessions=160, seed=0, splits=None, dividends=None) -> dict[str, pd.DataFrame]:
    """Prices as printed on XNYS sessions, Yahoo-style columns: a split {ticker: (date, ratio)}
    divides the printed prices from its date; a dividend {ticker: (date, fraction of the last
    close)} is paid on its ex-date; `Adj Close` is built from both, as Yahoo builds it."""
    rng = np.random.default_rng(seed)
    dates = xnys_sessions(start, sessions)
    frames = {}
    for ticker in tickers:
        close = 60 * np.exp(np.cumsum(rng.normal(0.0004, 0.015, sessions)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.006, sessions))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, sessions)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, sessions)))
        steps = np.ones(sessions)
        if splits and ticker in splits:
            day, ratio = splits[ticker]
            at = dates.get_loc(pd.Timestamp(day))
            for series in (close, open_, high, low):
                series[at:] /= ratio
            steps[at] = ratio
        if dividends and ticker in dividends:
            day, fraction = dividends[ticker]
            at = dates.get_loc(pd.Timestamp(day))
            steps[at] = 1 / (1 - fraction)
        after = np.r_[np.cumprod(steps[::-1])[::-1][1:], 1.0]  # product of the steps after each session
        frames[ticker] = pd.DataFrame(
            {
                "Date": dates.strftime("%Y-%m-%d"),
                "Open": open_,
                "High": high,
                "Low": low,
                "Close": close,
                "Adj Close": close / after,
                "Volume": rng.integers(1_000, 100_000, sessions),
            }
        )
    return frames


def write_bars(directory: Path, frames: dict[str, pd.DataFrame], through: str | None = None) -> Path:
    """Per-ticker CSVs holding the rows up to `through` (all when None): the source as of a night."""
    directory.mkdir(parents=True, exist_ok=True)
    for ticker, frame in frames.items():
        rows = frame if through is None else frame[pd.to_datetime(frame["Date"]) <= pd.Timestamp(through)]
        rows.to_csv(directory / f"{ticker}.csv", index=False)
    return directory


def write_config(path: Path, data: Path, strategy: str, tickers, **values) -> Path:
    params = values.pop("params", {})
    lines = [f"strategy = {json.dumps(strategy)}", f"tickers = {json.dumps(list(tickers))}", f"data = {json.dumps(str(data))}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    if params:
        lines.append("[params]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in params.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def evening(session: str) -> str:
    """A time after that session's close (New York)."""
    return f"{session}T18:30"


def night_in_child(name: str, now: str, kill_at: str | None = None, max_catch_up: int = 5, home=None) -> bool:
    """`paper run` in a forked process at `now`; with `kill_at` it dies there (SIGKILL). True when killed."""
    import os

    from tradesim.paper import account as paper
    from tradesim.paper.calendar import parse_now

    pid = os.fork()
    if pid == 0:
        try:
            if kill_at:
                os.environ[paper.KILL_ENV] = kill_at
            paper._reached.clear()
            try:
                paper.run_account(name, now=parse_now(now), max_catch_up=max_catch_up, home=home)
            except paper.TradesimError as error:
                print(error)
                os._exit(3)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, "the night failed"
    return os.WIFSIGNALED(status)


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
