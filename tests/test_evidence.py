"""Evidence with known answers: standard errors, intervals, the probabilistic and deflated Sharpe,
SPA, PBO, and the trial ledger that counts a study's runs."""

from __future__ import annotations

import json
import math
import multiprocessing
import sqlite3

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from helpers import synthetic_bars, write_ticker_dir
from tradesim.cli import main
from tradesim.evidence import significance as sig
from tradesim.evidence import trials


def ar1(phi, n, rng, mean=0.0008, scale=0.01):
    noise = rng.normal(0, scale, n + 50)
    x = np.zeros(n + 50)
    for t in range(1, n + 50):
        x[t] = phi * x[t - 1] + noise[t]
    return x[50:] + mean


def test_deflated_sharpe_reproduces_bailey_and_lopez_de_prado_2014():
    # Their example: 100 trials with annualized Sharpe variance 1/2, the best at 2.5 (annualized),
    # five years of daily returns (250 a year) with skew -3 and kurtosis 10: DSR 0.9004.
    daily = 2.5 / math.sqrt(250)
    assert sig.expected_maximum_sharpe(100, 0.5 / 250) * math.sqrt(250) == pytest.approx(1.7894, abs=1e-3)
    assert sig.deflated_sharpe(daily, -3, 10, 1250, 100, 0.5 / 250) == pytest.approx(0.9004, abs=5e-4)
    # one trial: nothing to deflate, the probabilistic Sharpe against zero
    assert sig.deflated_sharpe(daily, -3, 10, 1250, 1, 0.0) == sig.probabilistic_sharpe(daily, 0.0, -3, 10, 1250)


def test_probabilistic_sharpe_is_one_half_at_its_target_and_the_track_record_needs_an_edge():
    assert sig.probabilistic_sharpe(0.1, 0.1, -0.5, 6.0, 300) == pytest.approx(0.5)
    assert sig.probabilistic_sharpe(0.1, 0.0, 0.0, 3.0, 300) > 0.9
    assert sig.minimum_track_record(0.05, 0.05, 0.0, 3.0) is None
    # normal returns, daily Sharpe 0.1 against 0 at 95%: 1 + (1 + 0.1**2 / 2) * (1.645 / 0.1)**2
    assert sig.minimum_track_record(0.1, 0.0, 0.0, 3.0) == pytest.approx(1 + 1.005 * (1.6448536 / 0.1) ** 2, rel=1e-6)


def test_newey_west_standard_error_grows_with_autocorrelation():
    x = ar1(0.3, 3000, np.random.default_rng(4))
    sharpe, skew, kurtosis, n = sig.moments(x)
    assert sig.sharpe_standard_error_hac(x) / sig.sharpe_standard_error_iid(sharpe, skew, kurtosis, n) > 1.2
    iid = np.random.default_rng(5).normal(0.0005, 0.01, 3000)
    sharpe, skew, kurtosis, n = sig.moments(iid)
    assert sig.sharpe_standard_error_hac(iid) / sig.sharpe_standard_error_iid(sharpe, skew, kurtosis, n) == pytest.approx(1, abs=0.1)


def test_the_batched_newey_west_variance_is_statsmodels_one():
    from statsmodels.stats.sandwich_covariance import S_hac_simple

    rows = ar1(0.4, 300, np.random.default_rng(8)).reshape(3, 100)
    for row, batched in zip(rows, sig.long_run_variances(rows, 6)):
        assert batched == pytest.approx(S_hac_simple(row - row.mean(), nlags=6).item() / len(row), rel=1e-12)


@pytest.mark.parametrize("phi", [0.0, 0.3])
def test_bootstrap_interval_covers_the_true_sharpe_at_its_nominal_rate(phi):
    rng = np.random.default_rng(11)
    true = 0.0008 / (0.01 / math.sqrt(1 - phi**2))
    hits, simulations = 0, 150
    for i in range(simulations):
        low, high = sig.sharpe_interval(ar1(phi, 500, rng), reps=200, seed=i, level=0.90)
        hits += low <= true <= high
    assert 0.85 <= hits / simulations <= 0.95


def test_spa_finds_a_planted_edge_and_rarely_rejects_under_the_null():
    rng = np.random.default_rng(2)
    benchmark = rng.normal(0.0003, 0.01, 750)
    assert sig.spa_pvalue(benchmark + 0.002 + rng.normal(0, 0.003, 750), benchmark, reps=500, seed=0) < 0.05
    rejections = 0
    for i in range(40):
        base = rng.normal(0.0003, 0.01, 500)
        rejections += sig.spa_pvalue(base + rng.normal(0, 0.01, 500), base, reps=300, seed=i) < 0.05
    assert rejections / 40 <= 0.10


def test_rank_ic_newey_west_t_is_smaller_than_the_naive_one_on_overlapping_horizons():
    rng = np.random.default_rng(3)
    shocks = rng.normal(0.02, 0.1, 520)
    overlapping = pd.Series(np.convolve(shocks, np.ones(20) / 20, mode="valid"), index=pd.bdate_range("2020-01-01", periods=501))
    result = sig.rank_ic_evidence(overlapping.sample(frac=1, random_state=0), horizon=20)  # sorted by date inside
    assert result["hac_lags"] >= 19 and abs(result["t_hac"]) < abs(result["t_naive"]) / 2


def test_accuracy_is_tested_against_the_majority_rate_of_the_same_dates():
    rng = np.random.default_rng(1)
    truth = rng.random(400) < 0.6
    always_up = sig.prediction_evidence(truth, np.ones(400, dtype=bool), reps=200, seed=0)
    assert always_up["accuracy"] == pytest.approx(truth.mean()) and always_up["accuracy_pvalue"] > 0.3 and always_up["mcc_interval"] is None
    informed = np.where(rng.random(400) < 0.8, truth, ~truth)
    found = sig.prediction_evidence(truth, informed, reps=300, seed=0)
    assert found["accuracy_pvalue"] < 1e-6 and found["mcc_interval"][0] > 0.3


def test_pbo_is_near_one_half_on_noise_and_small_with_a_planted_edge():
    rng = np.random.default_rng(7)
    on_noise = [trials.probability_of_backtest_overfitting(rng.normal(0, 0.01, (800, 12)))["pbo"] for _ in range(8)]
    assert 0.4 <= np.mean(on_noise) <= 0.6  # one noise study's PBO varies widely; their mean is one half
    noise = rng.normal(0, 0.01, (800, 12))
    noise[:, 4] += 0.002
    assert trials.probability_of_backtest_overfitting(noise)["pbo"] < 0.15


def _record(args):
    path, index = args
    returns = pd.Series(np.random.default_rng(index).normal(0, 0.01, 50), index=pd.bdate_range("2021-01-01", periods=50))
    return trials.record("study", {"name": "study"}, f"trial-{index}", "x", {"seed": index}, returns, 0.1, [0.0, 0.2], path)


def test_the_ledger_takes_concurrent_runs(tmp_path):
    path = tmp_path / "trials.sqlite"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert all(pool.map(_record, [(path, i % 6) for i in range(12)]))
    assert sorted(t.trial for t in trials.trials("study", path)) == [f"trial-{i}" for i in range(6)]


def test_every_backtest_is_a_trial_and_a_repeat_adds_none(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    data = write_ticker_dir(tmp_path / "bars", synthetic_bars(("AAA", "BBB", "CCC"), sessions=260, seed=3))
    common = ["backtest", "--strategy", "momentum", "--tickers", "AAA,BBB,CCC", "--data", str(data), "--sig-reps", "200"]
    runner = CliRunner()
    first = runner.invoke(main, [*common, "--out", str(tmp_path / "a")], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert "95% interval" in first.output.splitlines()[next(i for i, l in enumerate(first.output.splitlines()) if l.startswith("metric"))]
    assert "the only trial of study" in first.output
    assert runner.invoke(main, [*common, "--out", str(tmp_path / "b"), "--no-reuse-decisions"]).exit_code == 0
    other = runner.invoke(main, [*common, "--lookback", "40", "--out", str(tmp_path / "c")], catch_exceptions=False)
    block = json.loads((tmp_path / "b" / "metrics.json").read_text())["significance"]
    assert block["trials"] == 1
    block = json.loads((tmp_path / "c" / "metrics.json").read_text())["significance"]
    assert block["trials"] == 2 and "of 2 trials" in other.output
    for key in ("se_iid", "se_hac", "interval", "psr_zero", "psr_benchmark", "min_track_record_zero"):
        assert key in block["sharpe"]
    assert block["benchmark"]["spa_pvalue"] is not None and block["rank_ic"]["t_hac"] is not None
    assert 0 <= block["deflated_sharpe"] <= 1
    listed = runner.invoke(main, ["trials", "--study", block["study"][:8], "--pbo", "--pbo-splits", "4"], catch_exceptions=False)
    assert listed.exit_code == 0 and "lookback=40" in listed.output and "probability of backtest overfitting" in listed.output
    assert "Evidence" in (tmp_path / "c" / "report.html").read_text()
    named = runner.invoke(main, [*common, "--study", "mine", "--out", str(tmp_path / "d")], catch_exceptions=False)
    assert "the only trial of study mine" in named.output
    with sqlite3.connect(tmp_path / "home" / "trials.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 3
    unknown = runner.invoke(main, ["trials", "--study", "nothing-like-it"])
    assert unknown.exit_code == 1 and "no such study" in unknown.output


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model-cutoff", "minilm"], "--model-cutoff 'minilm': expected SPEC=YYYY-MM-DD"),
        (["--model-cutoff", "minilm=someday"], "model_cutoffs minilm: expected a date"),
        (["--sig-reps", "10"], "sig_reps: expected at least 100"),
        (["--seeds", "0"], "seeds: expected a number of seeds >= 1"),
        (["--cutoff-embargo-days", "-1"], "cutoff_embargo_days: expected a number of days >= 0"),
    ],
)
def test_evidence_flags_refuse_bad_values_in_one_line(tmp_path, flags, message):
    done = CliRunner().invoke(main, ["backtest", "--strategy", "momentum", "--ticker", "MSFT", *flags, "--out", str(tmp_path / "out")])
    assert done.exit_code == 1 and message in done.output and "Traceback" not in done.output, done.output
    assert len(done.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_model_cutoffs_come_from_the_config_table_and_flags_add_to_it(tmp_path):
    from tradesim.config import read_toml, resolve

    path = tmp_path / "run.toml"
    path.write_text('strategy = "momentum"\nticker = "MSFT"\n[model_cutoffs]\n"hf:my/model" = 2020-05-31\n')
    config = resolve(read_toml(path), {"model_cutoffs": ["openai:http://x/v1#m=2023-01-31"]}, origin=str(path))
    assert config.model_cutoffs == {"hf:my/model": "2020-05-31", "openai:http://x/v1#m": "2023-01-31"}
    from tradesim.evidence.cutoffs import cutoff_of

    assert cutoff_of("hf:my/model", config.model_cutoffs).date == pd.Timestamp("2020-05-31")
    assert cutoff_of("hf:meta-llama/Llama-3.1-8B-Instruct").date == pd.Timestamp("2023-12-31")
    assert cutoff_of("minilm").source.startswith("sentence-transformers/all-MiniLM-L6-v2") and cutoff_of("smollm2").date is not None
    assert cutoff_of("hf:/tmp/tiny").date is None and "unknown" in cutoff_of("hf:/tmp/tiny").source
