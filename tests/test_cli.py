"""The `tradesim` command end to end: run directories, printed tables, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import empyrical
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from helpers import synthetic_bars, write_ticker_dir
from tradesim.cli import main

RUN_FILES = {"metrics.json", "equity.csv", "weights.csv", "trades.csv", "decisions.jsonl", "report.html", "equity.png", "run.json"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def bars_dir(tmp_path):
    return write_ticker_dir(tmp_path / "bars", synthetic_bars(("AAA", "BBB", "CCC", "DDD"), sessions=250, seed=6))


def test_momentum_on_the_sample_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    result = invoke("backtest", "--strategy", "momentum", "--ticker", "MSFT", "--start", "2015-01-01", "--end", "2016-12-30", "--lookback", "10", "--out", out)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert "sharpe" in result.output and "benchmark" in result.output and "fills next-open" in result.output

    metrics = json.loads((out / "metrics.json").read_text())
    equity = pd.read_csv(out / "equity.csv", index_col="date", parse_dates=True)
    assert list(equity.columns) == ["equity", "benchmark"]
    returns = equity["equity"].pct_change().iloc[1:]
    assert metrics["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns), rel=1e-6)
    assert metrics["total_return"] == pytest.approx(equity["equity"].iloc[-1] / equity["equity"].iloc[0] - 1, rel=1e-6)
    assert metrics["benchmark"]["total_return"] == pytest.approx(equity["benchmark"].iloc[-1] / 100_000 - 1, rel=1e-6)
    assert metrics["annualization"] == 252 and metrics["risk_free"] == 0

    weights = pd.read_csv(out / "weights.csv")
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert len(weights) == len(decisions) == len(equity)
    assert decisions[20]["trailing_return"] is not None and decisions[20]["action"] in ("buy", "sell", "hold")

    run = json.loads((out / "run.json").read_text())
    assert run["config"]["params"] == {"lookback": 10, "top_k": 1, "rebalance_every": 1, "short": False}
    assert run["resolved"]["fill"] == "next-open"
    assert len(run["data"]["fingerprint"]) == 64
    assert run["versions"]["pandas"] and run["versions"]["scikit-learn"] and "vectorbt" in run["versions"]
    assert "gguf" in run["versions"]  # None when the smollm2 extra is not installed: recorded either way
    assert "git" in run

    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page and 'src="http' not in page


def test_same_command_twice_gives_identical_results(tmp_path, bars_dir):
    args = ["backtest", "--strategy", "momentum", "--tickers", "AAA,BBB,CCC", "--data", bars_dir, "--top-k", "2", "--rebalance-every", "5", "--cost-bps", "3"]
    first = invoke(*args, "--out", tmp_path / "one")
    second = invoke(*args, "--out", tmp_path / "two")
    assert first.exit_code == second.exit_code == 0
    for name in ("equity.csv", "weights.csv", "trades.csv", "decisions.jsonl", "metrics.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_top_k_fills_at_next_open_with_costs(tmp_path, bars_dir):
    out = tmp_path / "run"
    result = invoke("backtest", "--strategy", "momentum", "--tickers", "AAA,BBB,CCC,DDD", "--data", bars_dir, "--top-k", "2", "--rebalance-every", "5", "--cost-bps", "10", "--out", out)
    assert result.exit_code == 0, result.output
    weights = pd.read_csv(out / "weights.csv", parse_dates=["date"])
    per_date = weights.groupby("date")["weight"]
    assert per_date.count().eq(4).all()
    held = per_date.apply(lambda w: sorted(w.round(12)))
    assert all(h in ([0, 0, 0.5, 0.5], [0, 0, 0, 0]) for h in held)
    assert weights["date"].drop_duplicates().diff().dropna().dt.days.min() >= 5
    trades = pd.read_csv(out / "trades.csv", parse_dates=["date"])
    opens = pd.read_csv(bars_dir / "AAA.csv", parse_dates=["Date"]).set_index("Date")
    first_aaa = trades[trades["ticker"] == "AAA"].iloc[0]
    factor = opens["Adj Close"] / opens["Close"]
    assert first_aaa["price"] == pytest.approx(opens.loc[first_aaa["date"], "Open"] * factor[first_aaa["date"]])
    assert trades["fees"].to_numpy() == pytest.approx(trades["value"].to_numpy() * 10 / 1e4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmark"]["name"] == "equal-weight buy-and-hold universe"
    assert metrics["n_trades"] == len(trades)


def test_signals_file_is_backtested_as_given(tmp_path, bars_dir):
    dates = pd.read_csv(bars_dir / "AAA.csv")["Date"].iloc[[10, 40, 90]]
    signals = tmp_path / "signals.csv"
    pd.DataFrame({"date": dates.repeat(2).to_numpy(), "ticker": ["AAA", "BBB"] * 3, "weight": [0.5, 0.5, 1.0, 0.0, 0.0, -0.5]}).to_csv(signals, index=False)
    out = tmp_path / "run"
    result = invoke("backtest", "--strategy", "signals", "--tickers", "AAA,BBB", "--data", bars_dir, "--signals", signals, "--out", out)
    assert result.exit_code == 0, result.output
    weights = pd.read_csv(out / "weights.csv")
    assert weights["date"].drop_duplicates().tolist() == dates.tolist()
    assert weights["weight"].tolist() == [0.5, 0.5, 1.0, 0.0, 0.0, -0.5]
    assert pd.read_csv(out / "equity.csv")["date"].iloc[0] == dates.iloc[0]


def test_config_file_with_flag_override(tmp_path, bars_dir):
    config = tmp_path / "run.toml"
    config.write_text(f'strategy = "momentum"\ntickers = "AAA"\ndata = "{bars_dir}"\nfill = "next-close"\n[params]\nlookback = 15\n')
    out = tmp_path / "run"
    result = invoke("backtest", "--config", config, "--fill", "next-open", "--lookback", "5", "--out", out)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["resolved"]["fill"] == "next-open"
    assert run["strategy"]["params"]["lookback"] == 5


@pytest.mark.parametrize(
    "args,message",
    [
        (["--strategy", "nope", "--ticker", "MSFT"], "--strategy: unknown strategy 'nope'"),
        (["--strategy", "momentum", "--ticker", "XXXX"], "--data sample: unknown ticker XXXX"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--start", "2015-99-01"], "start: expected a date like 2015-06-30"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--lookbak", "3"], "no such option '--lookbak' for strategy momentum"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--tickers", "A,B"], "--ticker and --tickers: give one of them"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--data", "/nonexistent/prices"], "--data /nonexistent/prices: no such file or directory"),
        (["--strategy", "signals", "--ticker", "MSFT"], "--signals: strategy signals needs a file"),
        (["--strategy", "momentum", "--tickers", "MSFT,AAPL", "--top-k", "3"], "--top-k 3: more than the 2 tickers given"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--train-end", "1980-01-01", "--start", "1979-01-01"], "no sessions before it"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--capital", "1e400"], "capital: expected a finite number, got inf"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--cost-bps", "nan"], "cost_bps: expected a finite number, got nan"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--risk-free", "-inf"], "risk_free: expected a finite number"),
        (["--strategy", "mlp", "--ticker", "MSFT", "--threshold", "inf"], "--threshold (params.threshold): expected a finite number, got 'inf'"),
        (["--strategy", "momentum", "--ticker", "MSFT", "--fill", "same-day"], "Invalid value for '--fill'"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run_directory(tmp_path, args, message):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["backtest", *args, "--out", str(out)])
    assert result.exit_code != 0
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()
    assert not any(p.name.startswith(".run.partial") for p in tmp_path.iterdir())


def test_header_only_files_and_non_finite_config_values_are_one_line(tmp_path, bars_dir):
    empty = tmp_path / "empty.csv"
    empty.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n")
    result = CliRunner().invoke(main, ["backtest", "--strategy", "momentum", "--ticker", "EMPTY", "--data", str(empty), "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "empty.csv: no data rows (a header and nothing under it)" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
    config = tmp_path / "run.toml"
    config.write_text(f'strategy = "momentum"\ntickers = "AAA"\ndata = "{bars_dir}"\nslippage_bps = nan\n')
    result = CliRunner().invoke(main, ["backtest", "--config", str(config)])
    assert result.exit_code != 0 and "slippage_bps: expected a finite number, got nan" in result.output
    config.write_text(f'strategy = "momentum"\ntickers = "AAA"\ndata = "{bars_dir}"\n[params]\nlookback = inf\n')
    result = CliRunner().invoke(main, ["backtest", "--config", str(config)])
    assert result.exit_code != 0 and "--lookback (params.lookback)" in result.output and "Traceback" not in result.output


def test_bad_signals_line_is_named(tmp_path, bars_dir):
    signals = tmp_path / "signals.csv"
    signals.write_text("date,ticker,weight\n2020-01-06,AAA,0.5\n2020-01-07,ZZZ,0.5\n")
    result = CliRunner().invoke(main, ["backtest", "--strategy", "signals", "--ticker", "AAA", "--data", str(bars_dir), "--signals", str(signals)])
    assert result.exit_code != 0
    assert "signals.csv, line 3: ticker ZZZ is not among the tickers of the run (AAA)" in result.output


def test_existing_out_directory_is_not_overwritten_silently(tmp_path, bars_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["backtest", "--strategy", "buy-and-hold", "--ticker", "AAA", "--data", str(bars_dir), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "already exists" in result.output
    assert (out / "keep.txt").exists()
    refused = CliRunner().invoke(main, [*args, "--overwrite"])
    assert refused.exit_code == 1 and "replaces only a tradesim run directory" in refused.output and "keep.txt" in refused.output
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert CliRunner().invoke(main, [*args, "--overwrite", "--cost-bps", "5"]).exit_code == 0  # a run directory is replaced
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert json.loads((out / "run.json").read_text())["config"]["cost_bps"] == 5


def test_overwrite_never_empties_a_working_directory_and_a_file_is_refused_before_any_work(tmp_path, bars_dir, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "strategy.py").write_text("my code")
    (work / "data").mkdir()
    monkeypatch.chdir(work)
    args = ["backtest", "--strategy", "buy-and-hold", "--ticker", "AAA", "--data", str(bars_dir)]
    refused = CliRunner().invoke(main, [*args, "--out", ".", "--overwrite"])
    assert refused.exit_code == 1 and "not one" in refused.output
    assert sorted(p.name for p in work.iterdir()) == ["data", "strategy.py"]
    (work / "taken").write_text("a file")
    for extra in ([], ["--overwrite"]):
        result = CliRunner().invoke(main, [*args, "--out", "taken", *extra])
        assert result.exit_code == 1 and "--out taken: exists and is not a directory" in result.output
        assert "strategy" not in result.output.split("Error")[0]  # refused before the backtest printed anything
    assert (work / "taken").read_text() == "a file" and not (work / "runs").exists()


def test_default_run_directory_names_are_one_safe_component_and_follow_the_umask(tmp_path, monkeypatch):
    import os
    import stat

    from tradesim.rundir import default_run_dir

    assert default_run_dir("momentum", ("BRK/B",)).name.endswith("-momentum-BRK_B")
    escaped = default_run_dir("momentum", ("../../X", "A"))
    assert escaped.parent == Path("runs") and ".." not in escaped.name and "/" not in escaped.name
    bars = write_ticker_dir(tmp_path / "bars", synthetic_bars(("AAA",), sessions=60, seed=1))
    stale = tmp_path / ".run.partial-999999999-abcd"  # a kill before the rename, by a process long gone
    stale.mkdir()
    (stale / "metrics.json").write_text("{}")
    old = os.umask(0o022)
    try:
        assert invoke("backtest", "--strategy", "buy-and-hold", "--ticker", "AAA", "--data", bars, "--out", tmp_path / "run").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
    assert not stale.exists()


def test_buy_and_hold_equals_its_benchmark(tmp_path, bars_dir):
    out = tmp_path / "run"
    assert invoke("backtest", "--strategy", "buy-and-hold", "--tickers", "AAA,BBB", "--data", bars_dir, "--out", out).exit_code == 0
    equity = pd.read_csv(out / "equity.csv")
    np.testing.assert_allclose(equity["equity"], equity["benchmark"], rtol=1e-12)


def test_data_show_and_strategies():
    shown = invoke("data", "show", "--data", "sample-long", "--tickers", "MSFT,AAPL")
    assert shown.exit_code == 0
    assert "closes only" in shown.output and "MSFT" in shown.output and "8313" in shown.output
    shown = invoke("data", "show", "--data", "sample", "--ticker", "MSFT")
    assert "open/high/low/close" in shown.output and "504" in shown.output
    listed = invoke("strategies")
    assert "momentum:" in listed.output and "--lookback (int, default 20)" in listed.output and "signals:" in listed.output


def test_cli_import_is_light():
    code = "import sys, tradesim.cli; print(sorted(m for m in ('pandas', 'numpy', 'vectorbt', 'torch', 'matplotlib') if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_data_check_reports_gaps_zero_volume_split_like_jumps_and_news_coverage(tmp_path):
    frames = synthetic_bars(("AAA", "BBB"), sessions=80, seed=4)
    frames["AAA"].loc[30, ["Open", "High", "Low", "Close", "Adj Close", "Volume"]] = np.nan
    frames["AAA"].loc[40:42, "Volume"] = 0
    raw = frames["BBB"].drop(columns=["Adj Close"])
    raw.loc[50:, ["Open", "High", "Low", "Close"]] /= 2  # a 2:1 split the file does not adjust for
    frames["BBB"] = raw
    bars = write_ticker_dir(tmp_path / "bars", frames)
    dates = pd.to_datetime(frames["AAA"]["Date"])
    news = tmp_path / "news.jsonl"
    news.write_text("".join(json.dumps({"ticker": "AAA", "created_at": f"{d.date()}T14:00:00Z", "text": f"item {i}"}) + "\n" for i, d in enumerate(dates[60:70])))
    result = invoke("data", "check", "--data", bars, "--news", news, "--test-start", dates[60].date())
    assert result.exit_code == 0
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.startswith(("AAA", "BBB"))}
    assert "1 missing bars (first " + str(dates[30].date()) in rows["AAA"] and "3 zero-volume sessions" in rows["AAA"]
    assert "10/20" in rows["AAA"] and "0/20" in rows["BBB"]
    assert "1 jumps like unadjusted splits" in rows["BBB"] and "WARNING: BBB" in result.output
    run = invoke("backtest", "--strategy", "momentum", "--tickers", "AAA,BBB", "--data", bars, "--news", news, "--out", tmp_path / "run")
    assert run.exit_code == 0
    line = next(line for line in run.output.splitlines() if "data check:" in line)
    assert "2 of 2 tickers with problems" in line and "news covers" in line
    broken = frames["AAA"].copy()
    broken.loc[5, "Open"] = broken.loc[5, "High"] * 2
    write_ticker_dir(tmp_path / "broken", {"AAA": broken})
    refused = CliRunner().invoke(main, ["data", "check", "--data", str(tmp_path / "broken")])
    assert refused.exit_code == 1 and "line 7: open" in refused.output and "outside the day's range" in refused.output


def _flat_and_then(tmp_path, tickers=("XXX", "YYY"), jump=None):
    """Constant prices (100), one ticker of which later multiplies by `jump` (a short's ruin)."""
    dates = pd.bdate_range("2020-01-02", periods=60)
    frames = {}
    for ticker in tickers:
        close = np.full(60, 100.0)
        if jump and ticker == jump[0]:
            close[jump[1]:] *= jump[2]
        frames[ticker] = pd.DataFrame({"Date": dates.strftime("%Y-%m-%d"), "Open": close, "High": close, "Low": close, "Close": close, "Volume": 1000})
    return write_ticker_dir(tmp_path / "flat", frames), dates


def test_gross_exposure_beyond_max_gross_is_refused_naming_strategy_and_date(tmp_path):
    bars, dates = _flat_and_then(tmp_path)
    signals = tmp_path / "signals.csv"
    signals.write_text(f"date,ticker,weight\n{dates[5].date()},XXX,1\n{dates[5].date()},YYY,-0.9\n")
    args = ["backtest", "--strategy", "signals", "--tickers", "XXX,YYY", "--data", str(bars), "--signals", str(signals), "--out", str(tmp_path / "run")]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and f"strategy signals asked for gross exposure 1.9 (the sum of |weights|) on {dates[5].date()}" in refused.output
    assert "--max-gross 1" in refused.output and not (tmp_path / "run").exists()
    allowed = invoke(*args, "--max-gross", "2")
    assert allowed.exit_code == 0


def test_ruin_closes_everything_and_the_equity_curve_never_goes_negative(tmp_path):
    bars, dates = _flat_and_then(tmp_path, jump=("YYY", 30, 3.0))  # YYY triples while 100% short
    signals = tmp_path / "signals.csv"
    signals.write_text(f"date,ticker,weight\n{dates[5].date()},YYY,-1\n")
    out = tmp_path / "run"
    result = invoke("backtest", "--strategy", "signals", "--tickers", "XXX,YYY", "--data", bars, "--signals", signals, "--out", out)
    assert result.exit_code == 0 and f"RUINED on {dates[30].date()}" in result.output
    equity = pd.read_csv(out / "equity.csv", index_col="date", parse_dates=True)["equity"]
    assert (equity >= 0).all() and (equity.loc[dates[30]:] == 0).all() and equity.loc[: dates[29]].min() > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ruined"] == str(dates[30].date()) and metrics["total_return"] == pytest.approx(-1.0)
    trades = pd.read_csv(out / "trades.csv")
    assert list(trades["note"].fillna("")) == ["", "ruined"]
    assert any("RUINED" in note for note in json.loads((out / "run.json").read_text())["notes"])


@pytest.mark.parametrize("fill", ["next-close", "same-close"])
def test_the_first_fills_costs_are_in_the_returns_in_every_fill_mode(tmp_path, fill):
    bars, _ = _flat_and_then(tmp_path, tickers=("XXX",))
    out = tmp_path / fill
    assert invoke("backtest", "--strategy", "buy-and-hold", "--ticker", "XXX", "--data", bars, "--cost-bps", "100", "--fill", fill, "--out", out).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["total_return"] == pytest.approx(1 / 1.01 - 1)  # 1% commission on buying 100%, flat prices
    equity = pd.read_csv(out / "equity.csv")["equity"]
    assert equity.iloc[0] == 100_000 or fill == "same-close"  # same-close on the data's first session: the fill is in that close
