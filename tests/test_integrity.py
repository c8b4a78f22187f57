"""Integrity proven from outside: change the data the way real data changes and check that no
earlier decision moves; show that a strategy cannot learn a return it cannot trade, nor alter data."""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fakes import FakeBackend
from helpers import synthetic_bars, write_ticker_dir
from strategies.baselines import Momentum
from strategies.llmoe import LLMoEStrategy
from strategies.neural import MLPStrategy
from test_yahoo import FakeYahoo
from tradesim.backtesting import run_backtest
from tradesim.cli import main
from tradesim.config import resolve
from tradesim.llm import model as model_module
from tradesim.market import load_market_data
from tradesim.market import yahoo
from tradesim.market.calendar import decision_cutoffs
from tradesim.market.data import FIELDS
from tradesim.strategy import Decision, Strategy

FAST = {"router": "fake:1", "epochs": 3, "patience": 2, "hidden": 8}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}"))


def _llmoe_decisions(data, news=None, **config):
    settings = {"strategy": "llmoe", "tickers": "MSFT", "data": data, "news": news, "params": FAST, **config}
    result = run_backtest(resolve({}, settings), LLMoEStrategy, progress=False)
    return {row["date"]: json.dumps(row) for row in result.decisions}


def _news(path, dates):
    rows = [{"id": f"n{i}", "ticker": "MSFT", "created_at": f"{day.date()}T15:00:00Z", "text": f"headline {i}"} for i, day in enumerate(dates[::3])]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_dividend_after_d_that_restates_every_adjusted_close_moves_no_decision_up_to_d(tmp_path):
    frame = synthetic_bars(("MSFT",), sessions=320, seed=12, start="2015-01-01")["MSFT"]
    dates = pd.to_datetime(frame["Date"])
    d, ex_date = dates[285], dates[290]
    news = _news(tmp_path / "news.jsonl", dates)
    original = write_ticker_dir(tmp_path / "original", {"MSFT": frame})
    restated = frame.copy()
    restated.loc[dates < ex_date, "Adj Close"] *= 1 - 0.8 / restated.loc[dates == dates[289], "Close"].iloc[0]
    write_ticker_dir(tmp_path / "restated", {"MSFT": restated})
    before = _llmoe_decisions(str(original), news, train_end=str(dates[250].date()))
    after = _llmoe_decisions(str(tmp_path / "restated"), news, train_end=str(dates[250].date()))
    up_to_d = [day for day in before if pd.Timestamp(day) <= d]
    assert len(up_to_d) == 36
    assert [before[day] for day in up_to_d] == [after[day] for day in up_to_d]
    assert all(f"close {row:.2f}" in before[str(dates[280].date())] for row in frame["Close"].iloc[276:281])  # printed prices


def test_yahoo_split_and_dividend_after_d_move_no_prompt_or_decision(tmp_path, monkeypatch):
    served = FakeYahoo(start="2018-09-04", sessions=210)  # a 2:1 split on 2019-05-15, a dividend on 2019-05-20
    monkeypatch.setattr(yahoo, "_download", served.download)
    monkeypatch.setattr(yahoo, "_now", lambda: served.now)
    served.now = pd.Timestamp("2019-05-14 21:00", tz="UTC")
    before = _llmoe_decisions("yahoo", start="2018-09-04", train_end="2019-03-01")
    served.now = pd.Timestamp("2019-06-28 21:00", tz="UTC")
    after = _llmoe_decisions("yahoo", start="2018-09-04", train_end="2019-03-01")
    assert len(before) == 53 and len(after) > len(before)
    assert all(before[day] == after[day] for day in before)
    split_eve = json.loads(after["2019-05-16"])["prompt"]
    assert "up" in split_eve or "down" in split_eve
    assert "down 5" not in split_eve.split("2019-05-15")[1].split("\n")[0]  # the split day is no -50% move


def _overnight_trap(sessions=700, seed=3):
    """A stock whose overnight gap is predictable from the last session (up after an up day) and
    whose open-to-close move is noise: only a fill at the close of the decision day could earn it."""
    rng = np.random.default_rng(seed)
    intraday = rng.normal(0, 0.005, sessions)
    gap = np.r_[0.0, np.where(intraday[:-1] > 0, 0.02, -0.02)]
    open_, close = np.empty(sessions), np.empty(sessions)
    previous = 50.0
    for t in range(sessions):
        open_[t] = previous * (1 + gap[t])
        close[t] = open_[t] * (1 + intraday[t])
        previous = close[t]
    dates = pd.bdate_range("2015-01-01", periods=sessions)
    return pd.DataFrame(
        {
            "Date": dates.strftime("%Y-%m-%d"), "Open": open_, "High": np.maximum(open_, close) * 1.001,
            "Low": np.minimum(open_, close) * 0.999, "Close": close, "Adj Close": close, "Volume": 1000,
        }
    )


def test_a_return_the_fill_cannot_earn_is_not_learned(tmp_path):
    frame = _overnight_trap()
    bars = str(write_ticker_dir(tmp_path / "trap", {"MSFT": frame}))
    close, open_ = frame["Close"].to_numpy(), frame["Open"].to_numpy()

    def hit_rates(fill):
        config = resolve({}, {"strategy": "mlp", "tickers": "MSFT", "data": bars, "train_end": frame["Date"][500], "fill": fill,
                              "params": {"epochs": 60, "hidden": 16}})
        result = run_backtest(config, MLPStrategy, progress=False)
        rows = [r for r in result.decisions if r["predicted"]][:-2]
        at = [frame.index[frame["Date"] == r["date"]][0] for r in rows]
        rise = np.array([r["predicted"] == "rise" for r in rows])
        untradable = np.array([close[i + 1] > close[i] for i in at])  # close of d to close of d+1
        tradable = np.array([open_[i + 2] > open_[i + 1] for i in at])  # next open to the open after
        return (rise == untradable).mean(), (rise == tradable).mean(), result.metrics["sharpe"]

    same_close, _, same_sharpe = hit_rates("same-close")
    assert same_close > 0.9 and same_sharpe > 3  # the overnight move is there to learn, if the close were tradable
    learned_overnight, tradable, sharpe = hit_rates("next-open")
    assert learned_overnight < 0.7 and tradable < 0.6 and sharpe < 1.5


def test_same_close_fills_are_flagged_everywhere(tmp_path):
    bars = str(write_ticker_dir(tmp_path / "bars", synthetic_bars(("AAA",), sessions=80, seed=2)))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["backtest", "--strategy", "momentum", "--ticker", "AAA", "--data", bars, "--fill", "same-close", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "SAME-CLOSE FILLS" in result.output.splitlines()[1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["look_ahead"] is True and metrics["fill"] == "same-close" and "SAME-CLOSE" in metrics["look_ahead_reasons"][0]
    run = json.loads((out / "run.json").read_text())
    assert "SAME-CLOSE" in run["resolved"]["look_ahead"][0] and run["resolved"]["fill"] == "same-close"
    assert "SAME-CLOSE FILLS" in (out / "report.html").read_text()
    trades = pd.read_csv(out / "trades.csv")
    weights = pd.read_csv(out / "weights.csv")
    assert trades["date"].iloc[0] == weights[weights["weight"] != 0]["date"].iloc[0]  # filled the day it was decided
    compared = CliRunner().invoke(main, ["compare", str(out)])
    assert "[LOOK-AHEAD]" in compared.output


def test_top_k_over_a_universe_with_listings_and_delistings_runs_and_the_benchmark_follows_them(tmp_path):
    frames = synthetic_bars(("AAA", "BBB", "CCC", "DDD"), sessions=160, seed=8, start="2018-01-01")
    frames["BBB"] = frames["BBB"].iloc[40:]  # lists late
    frames["CCC"] = frames["CCC"].iloc[:100]  # its data ends: delisted
    bars = str(write_ticker_dir(tmp_path / "bars", frames))
    from strategies.baselines import Momentum

    config = resolve({}, {"strategy": "momentum", "tickers": "AAA,BBB,CCC,DDD", "data": bars, "params": {"top_k": 2, "lookback": 5}})
    result = run_backtest(config, Momentum, progress=False)
    last_ccc = pd.Timestamp(frames["CCC"]["Date"].iloc[-1])
    assert result.simulation.delisted == {"CCC": last_ccc} and any("CCC's data ends" in note for note in result.notes)
    benchmark_trades = result.benchmark.trades
    listed = pd.Timestamp(frames["BBB"]["Date"].iloc[0])
    assert benchmark_trades[benchmark_trades["ticker"] == "BBB"]["date"].min() > listed  # bought once it lists
    closed = benchmark_trades[(benchmark_trades["ticker"] == "CCC") & (benchmark_trades["note"] == "delisted")]
    assert list(closed["date"]) == [last_ccc]
    assert (result.benchmark.positions.iloc[-1][["AAA", "BBB", "DDD"]] > 0).all() and result.benchmark.positions.iloc[-1]["CCC"] == 0


# The generic vandal: everything public reachable from a view, read and written.

WALK_ARGUMENTS = {"ticker": (None,), "name": FIELDS, "last": (None, 3)}  # `ticker`: each ticker is added per view


def _calls(method, view):
    """Argument sets for a public method: each combination of the values its parameters take."""
    import inspect
    import itertools

    choices = []
    for parameter in inspect.signature(method).parameters.values():
        if parameter.name == "ticker":
            choices.append((*view.tickers, None) if "None" in str(parameter.annotation) else view.tickers)
        elif parameter.name == "date":
            choices.append((view.sessions[max(-3, -len(view.sessions))],))
        elif parameter.name in WALK_ARGUMENTS:
            choices.append(WALK_ARGUMENTS[parameter.name])
        elif parameter.default is inspect.Parameter.empty:
            raise AssertionError(f"the view walk does not know how to call {method.__qualname__}({parameter.name}=...): teach it")
        else:
            choices.append((parameter.default,))
    return [dict(zip(inspect.signature(method).parameters, values)) for values in itertools.product(*choices)]


def walk_view(view, depth=3):
    """(path, thing) for everything public reachable from a view: attributes, the results of every
    public method called with every argument it takes, and their attributes in turn."""
    seen, found = set(), []

    def visit(thing, path, level):
        if id(thing) in seen or isinstance(thing, (str, bytes, int, float, bool, type(None), pd.Timestamp)):
            found.append((path, thing))
            return
        seen.add(id(thing))
        found.append((path, thing))
        if isinstance(thing, (np.ndarray, pd.DataFrame, pd.Series, pd.Index)) or level >= depth:
            return
        if isinstance(thing, (tuple, list)):
            for i, item in enumerate(thing):
                visit(item, f"{path}[{i}]", level + 1)
            return
        if isinstance(thing, dict) or hasattr(thing, "keys"):
            for key in list(thing.keys()):
                visit(thing[key], f"{path}[{key!r}]", level + 1)
            return
        for name in dir(thing):
            if name.startswith("_"):
                continue
            value = getattr(thing, name)
            if callable(value) and not isinstance(value, type):
                for arguments in _calls(value, view):
                    shown = ", ".join(f"{key}={value}" for key, value in arguments.items())
                    visit(value(**arguments), f"{path}.{name}({shown})", level + 1)
            elif not isinstance(value, type):
                visit(value, f"{path}.{name}", level + 1)

    visit(view, "view", 0)
    return found


def _leaf_digest(thing) -> str:
    if isinstance(thing, (pd.DataFrame, pd.Series)):
        return thing.to_csv()
    if isinstance(thing, pd.Index):
        return ",".join(map(str, thing))
    if isinstance(thing, np.ndarray):
        return repr(thing.tolist())
    if isinstance(thing, (str, bytes, int, float, bool, type(None), pd.Timestamp)):
        return repr(thing)
    return type(thing).__name__


def _vandalize(thing) -> None:
    """Try every write a strategy could make: reopen and fill arrays, assign into tables, clear
    containers, replace attributes."""
    writes = []
    if isinstance(thing, np.ndarray):
        def reopen_and_fill(array=thing):
            for target in (array, array.base):
                if isinstance(target, np.ndarray):
                    target.flags.writeable = True
                    target.fill(0 if target.dtype != object else "edited")
        writes.append(reopen_and_fill)
    elif isinstance(thing, pd.DataFrame):
        writes += [lambda: thing.iloc.__setitem__((slice(None), slice(None)), 0), lambda: thing.to_numpy().fill(0)]
    elif isinstance(thing, pd.Series):
        writes += [lambda: thing.iloc.__setitem__(slice(None), 0), lambda: thing.to_numpy().fill(0)]
    elif isinstance(thing, pd.Index):
        writes.append(lambda: thing.to_numpy().fill(0))
    elif isinstance(thing, (list, dict)) or hasattr(thing, "clear"):
        writes.append(thing.clear)
    elif not isinstance(thing, (str, bytes, int, float, bool, type(None), pd.Timestamp, tuple)):
        for name in [n for n in dir(thing) if not n.startswith("_") and not callable(getattr(thing, n, None))]:
            writes.append(lambda name=name: setattr(thing, name, None))
    for write in writes:
        try:
            write()
        except (ValueError, TypeError, AttributeError, KeyError, dataclasses.FrozenInstanceError):
            pass


class Walker(Strategy):
    """Logs a digest of everything reachable from its view, then (when vandalizing) writes to all of it."""

    name = "walker"
    summary = "test strategy"
    vandalize = False

    def decision_dates(self, sessions):
        return sessions[::4]

    def decide(self, view):
        import hashlib

        found = walk_view(view)
        digest = hashlib.sha256("\n".join(f"{path}={_leaf_digest(thing)}" for path, thing in found).encode()).hexdigest()
        if self.vandalize:
            for _, thing in found:
                _vandalize(thing)
        return Decision(dict.fromkeys(self.tickers, 1 / len(self.tickers)), {t: {"digest": digest} for t in self.tickers})


def _future_marked_inputs(tmp_path, day_index=60):
    """Bars and news in which everything after one decision date is recognisable: volume 7777777,
    prices near 9000, news texts and ids that say FUTURE."""
    frames = synthetic_bars(("AAA", "BBB"), sessions=90, seed=4, start="2016-01-04")
    day = pd.Timestamp(frames["AAA"]["Date"].iloc[day_index])
    for frame in frames.values():
        later = pd.to_datetime(frame["Date"]) > day
        frame.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] = [9000.0, 9100.0, 8900.0, 9050.0, 9050.0]
        frame.loc[later, "Volume"] = 7777777
    cutoff = decision_cutoffs(pd.DatetimeIndex([day]))[0]
    rows = []
    for i, stamp in enumerate(pd.date_range(day - pd.Timedelta(days=40), day + pd.Timedelta(days=20), freq="13h", tz="UTC")):
        future = stamp >= cutoff
        rows.append({"id": f"{'future' if future else 'past'}-{i}", "ticker": ["AAA", "BBB", ""][i % 3],
                     "created_at": stamp.isoformat(), "text": f"{'FUTURE' if future else 'past'} item {i}"})
    bars = write_ticker_dir(tmp_path / "bars", frames)
    (tmp_path / "news.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(bars), str(tmp_path / "news.jsonl"), day, cutoff


FUTURE_NUMBERS = (9000.0, 9100.0, 8900.0, 9050.0, 7777777.0)


def _reveals_future(thing, cutoff) -> bool:
    text = _leaf_digest(thing)
    if "FUTURE" in text or "future-" in text:
        return True
    if isinstance(thing, pd.DataFrame):
        return any(_reveals_future(thing[c].to_numpy(), cutoff) for c in thing.columns) or _index_after(thing.index, cutoff)
    if isinstance(thing, (pd.Index, pd.Series)):
        values = thing.to_numpy()
        return _index_after(thing if isinstance(thing, pd.Index) else thing.index, cutoff) or _reveals_future(values, cutoff)
    if isinstance(thing, np.ndarray) and thing.size and thing.dtype.kind in "iufM":
        if thing.dtype.kind == "M":
            return bool((thing.astype("datetime64[ns]").astype(np.int64) >= cutoff.value).any())
        values = thing.astype(float)
        if np.isin(values, FUTURE_NUMBERS).any():
            return True
        return bool((values > 10**18).any() and (values[values > 10**18] >= cutoff.value).any())  # instants in ns
    if isinstance(thing, float):
        return thing in FUTURE_NUMBERS
    return False


def _index_after(index, cutoff) -> bool:
    if not isinstance(index, pd.DatetimeIndex) or index.empty:
        return False
    last = index.max()
    return last > (cutoff if last.tz is not None else cutoff.tz_convert("America/New_York").tz_localize(None))


def test_nothing_public_reachable_from_a_view_reveals_anything_after_its_cutoff(tmp_path):
    bars, news, day, cutoff = _future_marked_inputs(tmp_path)
    data = load_market_data(bars, ("AAA", "BBB"), news=news)
    assert data.news["text"].str.contains("FUTURE").sum() > 10  # the data holds the future; the view must not
    for view in (data.view(day), data.view(day).at(data.sessions[50])):
        found = walk_view(view)
        paths = {re.sub(r"\(.*?\)|\[.*?\]", "", path) for path, _ in found}
        assert {"view.news_window.frame", "view.news_window.texts", "view.ticker_bars", "view.window", "view.news", "view.at.news_for"} <= paths
        leaks = [path for path, thing in found if _reveals_future(thing, cutoff)]
        assert not leaks, leaks[:5]


def test_a_strategy_writing_to_everything_reachable_from_its_views_changes_no_later_decision(tmp_path):
    bars, news, _, _ = _future_marked_inputs(tmp_path)
    config = resolve({}, {"strategy": "walker", "tickers": "AAA,BBB", "data": bars, "news": news})
    clean = run_backtest(config, Walker, progress=False)
    Walker.vandalize = True
    try:
        vandalized = run_backtest(config, Walker, progress=False)
    finally:
        Walker.vandalize = False
    assert len(clean.decisions) > 20
    assert [row["digest"] for row in vandalized.decisions] == [row["digest"] for row in clean.decisions]
    fresh = load_market_data(bars, ("AAA", "BBB"), news=news)
    pd.testing.assert_frame_equal(vandalized.data.news, fresh.news)
    for name in FIELDS:
        pd.testing.assert_frame_equal(vandalized.data.bars[name], fresh.bars[name])  # what the engine filled at
    pd.testing.assert_series_equal(vandalized.simulation.equity, clean.simulation.equity)
    assert not any(array.flags.writeable for array in vandalized.data.arrays.values())


def test_momentum_makes_no_round_trip_over_one_missing_bar(tmp_path):
    frames = synthetic_bars(("AAA", "BBB"), sessions=120, seed=3)
    for ticker, end in (("AAA", 90), ("BBB", 60)):  # both rise, AAA faster: AAA is always the top 1
        rising = np.linspace(50, end, 120)
        frame = frames[ticker]
        frame["Open"], frame["Close"], frame["Adj Close"] = rising * 0.999, rising, rising
        frame["High"], frame["Low"] = rising * 1.01, rising * 0.99
    frames["AAA"].loc[80, ["Open", "High", "Low", "Close", "Adj Close", "Volume"]] = np.nan  # one null row (BBB has the session)
    bars = str(write_ticker_dir(tmp_path / "bars", frames))
    config = resolve({}, {"strategy": "momentum", "tickers": "AAA,BBB", "data": bars, "params": {"lookback": 10, "top_k": 1}})
    result = run_backtest(config, Momentum, progress=False)
    assert (result.weights["AAA"].iloc[11:] == 1.0).all()  # held through the missing bar
    assert set(result.simulation.trades["ticker"]) == {"AAA"} and len(result.simulation.trades) == 1
