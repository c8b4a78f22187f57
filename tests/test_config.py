import pytest

from strategies.baselines import Momentum
from tradesim.config import read_toml, resolve
from tradesim.errors import TradesimError


def test_flags_override_the_file_and_unset_flags_do_not(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('strategy = "momentum"\ntickers = ["msft", "AAPL"]\ncost_bps = 5\nfill = "next-close"\n[params]\nlookback = 60\n')
    config = resolve(read_toml(path), {"cost_bps": 2.5, "fill": None, "tickers": None, "params": {"top_k": "2"}})
    assert config.tickers == ("MSFT", "AAPL")
    assert config.cost_bps == 2.5 and config.fill == "next-close"
    assert config.params == {"lookback": 60, "top_k": "2"}
    assert Momentum(config.tickers, config.params).settings.as_dict() == {"lookback": 60, "top_k": 2, "rebalance_every": 1, "short": False}


@pytest.mark.parametrize(
    "values,message",
    [
        ({"strategy": "momentum", "ticker": "MSFT", "fil": "next-open"}, "unknown key 'fil'"),
        ({"strategy": "momentum", "ticker": "MSFT", "fill": "tomorrow"}, "fill: expected one of next-open, next-close"),
        ({"strategy": "momentum", "ticker": "MSFT", "start": "yesterday-ish"}, "start: expected a date like 2015-06-30"),
        ({"strategy": "momentum", "ticker": "MSFT", "capital": -5}, "capital: expected a positive amount"),
        ({"strategy": "momentum", "ticker": "MSFT", "cost_bps": "cheap"}, "cost_bps: expected a number"),
        ({"strategy": "momentum", "ticker": "MSFT", "tickers": ["A"]}, "give 'ticker' or 'tickers', not both"),
        ({"strategy": "momentum"}, "no ticker given"),
        ({"strategy": "momentum", "ticker": "MSFT", "start": "2020-01-01", "end": "2019-01-01"}, "start 2020-01-01 is after end 2019-01-01"),
        ({"strategy": "momentum", "ticker": "MSFT", "start": "2020-01-01", "train_end": "2019-01-01"}, "train_end 2019-01-01 must lie after start"),
        ({"strategy": "momentum", "ticker": "MSFT", "params": 3}, "'params' must be a table"),
    ],
)
def test_bad_configuration_is_one_clear_error(values, message):
    with pytest.raises(TradesimError, match=message):
        resolve(values, {}, origin="run.toml")


@pytest.mark.parametrize(
    "params,message",
    [
        ({"lookbak": 3}, r"--lookbak: not a parameter of strategy momentum \(its parameters: --lookback, --top-k"),
        ({"lookback": "ten"}, r"--lookback \(params.lookback\): expected an integer, got 'ten'"),
        ({"lookback": 0}, r"expected a value >= 1"),
        ({"short": "maybe"}, "expected true or false"),
    ],
)
def test_strategy_parameters_are_checked(params, message):
    with pytest.raises(TradesimError, match=message):
        Momentum(("MSFT",), params)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("strategy = ")
    with pytest.raises(TradesimError, match=r"bad\.toml: not valid TOML"):
        read_toml(path)


@pytest.mark.parametrize("rate", [5, 1.5, -1])
def test_a_risk_free_rate_given_in_percent_is_refused(rate):
    with pytest.raises(TradesimError, match="risk_free: expected an annual rate as a fraction"):
        resolve({}, {"strategy": "momentum", "tickers": "AAA", "risk_free": rate})
    assert resolve({}, {"strategy": "momentum", "tickers": "AAA", "risk_free": 0.05}).risk_free == 0.05


def test_a_backtest_leaves_the_callers_random_generators_as_they_were(tmp_path):
    import numpy as np
    import torch

    from helpers import synthetic_bars, write_ticker_dir
    from strategies.neural import MLPStrategy
    from tradesim.backtesting import run_backtest

    bars = write_ticker_dir(tmp_path / "bars", synthetic_bars(("AAA",), sessions=200, seed=1))
    config = resolve({}, {"strategy": "mlp", "tickers": "AAA", "data": str(bars), "train_end": "2020-07-01", "params": {"epochs": 2, "hidden": 4}})
    np.random.seed(123)
    torch.manual_seed(123)
    expected = (np.random.random(3), torch.rand(3))
    np.random.seed(123)
    torch.manual_seed(123)
    run_backtest(config, MLPStrategy, progress=False)
    assert np.array_equal(np.random.random(3), expected[0]) and torch.equal(torch.rand(3), expected[1])


def test_the_default_number_of_resamples_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRADESIM_SIG_REPS", "300")
    assert resolve({}, {"strategy": "momentum", "tickers": "MSFT"}).sig_reps == 300
    assert resolve({"sig_reps": 500}, {"strategy": "momentum", "tickers": "MSFT"}).sig_reps == 500  # the file's value wins
    assert resolve({}, {"strategy": "momentum", "tickers": "MSFT", "sig_reps": 400}).sig_reps == 400
    monkeypatch.setenv("TRADESIM_SIG_REPS", "many")
    with pytest.raises(TradesimError, match="TRADESIM_SIG_REPS: expected an integer"):
        resolve({}, {"strategy": "momentum", "tickers": "MSFT"})
    monkeypatch.delenv("TRADESIM_SIG_REPS")
    assert resolve({}, {"strategy": "momentum", "tickers": "MSFT"}).sig_reps == 2000
