import empyrical
import numpy as np
import pandas as pd
import pytest

from tradesim.metrics import performance, trading


@pytest.fixture
def returns():
    rng = np.random.default_rng(4)
    return pd.Series(rng.normal(0.0005, 0.012, 500), index=pd.bdate_range("2019-01-01", periods=500))


@pytest.mark.parametrize("risk_free", [0.0, 0.03])
def test_performance_equals_direct_empyrical_calls(returns, risk_free):
    got = performance(returns, annualization=252, risk_free=risk_free)
    daily_rf = risk_free / 252
    assert got["total_return"] == pytest.approx(empyrical.cum_returns_final(returns), rel=1e-12)
    assert got["annual_return"] == pytest.approx(empyrical.annual_return(returns, annualization=252), rel=1e-12)
    assert got["annual_volatility"] == pytest.approx(empyrical.annual_volatility(returns, annualization=252), rel=1e-12)
    assert got["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns, risk_free=daily_rf, annualization=252), rel=1e-12)
    assert got["sortino"] == pytest.approx(
        empyrical.sortino_ratio(returns, required_return=daily_rf, annualization=252), rel=1e-12
    )
    assert got["max_drawdown"] == pytest.approx(empyrical.max_drawdown(returns), rel=1e-12)
    assert got["calmar"] == pytest.approx(empyrical.calmar_ratio(returns, annualization=252), rel=1e-12)
    assert got["max_drawdown"] < 0


def test_undefined_ratios_are_none_not_nan():
    flat = pd.Series(np.zeros(30), index=pd.bdate_range("2020-01-01", periods=30))
    got = performance(flat)
    assert got["total_return"] == 0
    assert got["sharpe"] is None and got["calmar"] is None


def test_trading_metrics():
    dates = pd.bdate_range("2020-01-01", periods=5)
    equity = pd.Series([100.0, 100.0, 110.0, 110.0, 121.0], index=dates)
    exposure = pd.Series([0.0, 1.0, 1.0, 0.0, 0.0], index=dates)
    trades = pd.DataFrame({"date": [dates[1], dates[3]], "value": [100.0, 110.0]})
    got = trading(trades, equity, exposure, annualization=4)
    assert got["n_trades"] == 2
    assert got["exposure"] == pytest.approx(0.5)
    # one-way: half of (100/100 + 110/110), over 4 periods, times 4 periods a year
    assert got["turnover"] == pytest.approx(1.0)


def test_matthews_correlation_is_scikit_learns():
    from sklearn.metrics import matthews_corrcoef

    from tradesim.metrics import matthews

    rng = np.random.default_rng(3)
    for size in (2, 7, 50, 400):
        for share in (0.1, 0.5, 0.9):
            truth, guess = rng.random(size) < share, rng.random(size) < 0.5
            assert matthews(truth, guess) == pytest.approx(matthews_corrcoef(truth, guess), abs=1e-12)
    constant = np.ones(10, dtype=bool)
    assert matthews(constant, rng.random(10) < 0.5) == matthews_corrcoef(constant, rng.random(10) < 0.5) == 0.0
