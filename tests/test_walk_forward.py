"""Walk-forward folds: each fold is fitted only on what its schedule allows (the embargo and the
label horizon keep every training label out of its test period), the look-ahead property holds
across folds, and a rerun loads each fold's stored models."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from helpers import synthetic_bars, write_ticker_dir
from strategies.neural import MLPStrategy
from test_lookahead import _scramble_after
from tradesim.backtesting import run_backtest
from tradesim.cli import main
from tradesim.config import resolve
from tradesim.errors import TradesimError
from tradesim.sweep.folds import plan_folds

EVERY, EMBARGO, WINDOW = 40, 3, 150
TRAIN_END = "2016-01-04"


def _config(data, **extra):
    values = {
        "strategy": "mlp", "tickers": "AAA", "data": str(data), "train_end": TRAIN_END, "walk_forward": EVERY,
        "embargo": EMBARGO, "train_window": WINDOW, "sig_reps": 100, "reuse_decisions": False,
        "params": {"epochs": 4, "hidden": 4, "patience": 2},
    }
    values.update(extra)
    return resolve({}, values)


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    return write_ticker_dir(tmp_path_factory.mktemp("wf") / "bars", synthetic_bars(("AAA",), sessions=420, seed=4, start="2015-01-01"))


@pytest.fixture(scope="module")
def walked(bars):
    return run_backtest(_config(bars), MLPStrategy, progress=False)


def test_every_fold_trains_before_its_embargo_and_its_labels_end_before_its_test_period(walked):
    sessions = walked.data.sessions
    at = lambda day: int(sessions.get_loc(pd.Timestamp(day)))  # noqa: E731
    folds = walked.metrics["folds"]
    test = sessions[sessions >= pd.Timestamp(TRAIN_END)]
    assert len(folds) == -(-len(test) // EVERY) >= 4
    ids = set()
    for number, fold in enumerate(folds):
        assert fold["fold"] == number
        assert at(fold["test_first"]) == at(TRAIN_END) + number * EVERY
        assert at(fold["test_first"]) - at(fold["train_last"]) == 1 + EMBARGO
        assert at(fold["train_last"]) - at(fold["train_first"]) + 1 == WINDOW
        first_label, last_label = fold["training_period"]
        assert at(first_label) >= at(fold["train_first"])
        # a next-open label of session t is earned from the open of t+1 to the open of t+2
        assert at(last_label) + 2 <= at(fold["train_last"]) < at(fold["test_first"]) - EMBARGO
        ids.update(model["id"] for model in fold["fitted_models"])
        assert all(model["loaded"] is False for model in fold["fitted_models"])
    assert len(ids) == len(folds)  # refitted on each fold's own rows
    for row in walked.decisions:
        fold = folds[row["fold"]]
        assert fold["test_first"] <= row["date"] <= fold["test_last"]


def test_the_stitched_curve_and_the_folds_metrics(walked):
    returns = walked.simulation.returns
    folds = walked.metrics["folds"]
    assert sum(fold["sessions"] for fold in folds) == int((returns.index > pd.Timestamp(folds[0]["test_first"])).sum())
    compounded = np.prod([1 + fold["total_return"] for fold in folds]) - 1
    equity = walked.simulation.equity
    assert compounded == pytest.approx(equity.iloc[-1] / equity.loc[folds[0]["test_first"]] - 1, rel=1e-9)
    assert walked.metrics["walk_forward"] == {"every": EVERY, "train_window": WINDOW, "embargo": EMBARGO}


def test_a_rerun_loads_every_folds_models_and_decides_the_same(bars, walked):
    again = run_backtest(_config(bars), MLPStrategy, progress=False)
    assert [m["loaded"] for f in again.metrics["folds"] for m in f["fitted_models"]] == [True] * len(walked.metrics["folds"])
    assert again.decisions == walked.decisions


def test_changing_the_data_after_d_moves_no_decision_up_to_d_across_folds(tmp_path, bars, walked):
    """d lies inside the third fold: the folds after it are fitted on changed data, the ones up to
    it (and their decisions) must not move."""
    split = pd.Timestamp(walked.metrics["folds"][2]["test_first"]) + pd.Timedelta(days=20)
    frames = {"AAA": pd.read_csv(bars / "AAA.csv")}
    changed = write_ticker_dir(tmp_path / "changed", _scramble_after(frames, np.random.default_rng(3), split))
    other = run_backtest(_config(changed), MLPStrategy, progress=False)
    up_to = lambda result: [json.dumps(r) for r in result.decisions if pd.Timestamp(r["date"]) <= split]  # noqa: E731
    assert len(up_to(walked)) > 2 * EVERY
    assert up_to(walked) == up_to(other)
    later = lambda result: [r["probability"] for r in result.decisions if pd.Timestamp(r["date"]) > split]  # noqa: E731
    assert later(walked) != later(other)  # the perturbation reached the later folds: the test can fail


def test_plan_folds_with_an_expanding_window_and_a_short_last_fold():
    sessions = pd.bdate_range("2020-01-01", periods=100)
    folds = plan_folds(sessions, sessions[60:], 15, "expanding", 0)
    assert [f.test_first for f in folds] == [sessions[60], sessions[75], sessions[90]]
    assert folds[-1].test_last == sessions[-1]
    assert all(f.first_index == 0 and f.last_index == 59 + 15 * f.number for f in folds)
    with pytest.raises(TradesimError, match="--embargo 60"):
        plan_folds(sessions, sessions[60:], 15, "expanding", 60)


@pytest.mark.parametrize("flags,message", [
    (["--strategy", "momentum", "--ticker", "MSFT", "--walk-forward", "20"], "momentum learns nothing"),
    (["--strategy", "mlp", "--ticker", "MSFT", "--embargo", "3"], "give walk_forward N"),
    (["--strategy", "mlp", "--ticker", "MSFT", "--walk-forward", "20", "--train-window", "ten"], "expected expanding or a number"),
    (["--strategy", "mlp", "--ticker", "MSFT", "--walk-forward", "-1"], "walk_forward: expected"),
])
def test_bad_schedules_get_one_line(tmp_path, flags, message):
    result = CliRunner().invoke(main, ["backtest", *flags, "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
