"""TradExpert: experts' point-in-time inputs, both modes, every ranking method, the portfolio rules,
the General Expert's fitting, factors and fundamentals."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fakes import FakeBackend
from helpers import synthetic_bars, write_ticker_dir
from strategies.tradexpert.strategy import TradExpert
from tradesim.backtesting import run_backtest
from tradesim.cli import main
from tradesim.config import resolve
from tradesim.errors import TradesimError
from tradesim.llm import model as model_module
from tradesim.market import load_market_data
from tradesim.market.factors import FACTOR_HISTORY, FACTORS, compute_factors
from tradesim.metrics import prediction_quality, rank_ic
from tradesim.policies import top_k_dropout
from tradesim.rundir import write_run_directory

TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
FAST = {"epochs": 3, "patience": 2, "hidden": 8, "encoder": "fake:enc"}
TRAIN_END = "2020-11-02"  # session 219 of 300


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}"))


@pytest.fixture
def prices(tmp_path):
    return write_ticker_dir(tmp_path / "prices", synthetic_bars(TICKERS, 300, seed=4))


def _news(path, dates, tag=""):
    rows = [
        {"ticker": TICKERS[i % len(TICKERS)], "created_at": f"{day.date()}T14:00:00Z", "text": f"headline {i}{tag}"}
        for i, day in enumerate(dates[::2])
    ]
    rows += [{"ticker": "", "created_at": f"{day.date()}T13:00:00Z", "text": f"Fed says {i}{tag}"} for i, day in enumerate(dates[::7])]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _fundamentals(path, restated=None):
    rows = [
        {"ticker": t, "period_end": "2020-06-30", "published_at": "2020-07-30", "field": "revenue", "value": 100 + i}
        for i, t in enumerate(TICKERS)
    ]
    rows += [
        {"ticker": t, "period_end": "2020-09-30", "published_at": "2020-10-29", "field": "revenue", "value": 110 + i}
        for i, t in enumerate(TICKERS)
    ]
    if restated:
        rows.append({"ticker": "AAA", "period_end": "2020-09-30", "published_at": restated, "field": "revenue", "value": 50})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _run(data, params=None, **config):
    settings = {"strategy": "tradexpert", "tickers": ",".join(TICKERS), "data": str(data), "train_end": TRAIN_END}
    settings.update(config)
    result = run_backtest(resolve({}, {**settings, "params": {**FAST, **(params or {})}}), TradExpert, progress=False)
    return result


def test_changing_data_after_d_changes_no_report_comparison_or_decision_up_to_d(tmp_path, prices):
    dates = pd.bdate_range("2020-01-02", periods=300)
    d = dates[250]
    news = _news(tmp_path / "news.csv", dates)
    fundamentals = _fundamentals(tmp_path / "f.csv")
    params = {"general_expert": "fake:ge"}  # zero-shot: every report reaches the model's prompts
    before = _run(prices, params, news=str(news), fundamentals=str(fundamentals))

    frames = synthetic_bars(TICKERS, 300, seed=4)
    changed = {}
    for ticker, frame in frames.items():
        frame = frame.copy()
        later = pd.to_datetime(frame["Date"]) > d
        for column in ("Open", "High", "Low", "Close", "Adj Close"):
            frame.loc[later, column] *= 3.0  # a different future
        frame.loc[later, "Volume"] *= 5
        frame.loc[~later, "Adj Close"] *= 0.5  # a distribution after d restates every earlier adjusted close
        changed[ticker] = frame
    changed_prices = write_ticker_dir(tmp_path / "changed", changed)
    more_news = pd.concat([pd.read_csv(news), pd.read_csv(_news(tmp_path / "later.csv", dates[dates > d], " LATER"))])
    more_news.to_csv(tmp_path / "news2.csv", index=False)
    restated = _fundamentals(tmp_path / "f2.csv", restated=str(dates[260].date()))
    after = _run(changed_prices, params, news=str(tmp_path / "news2.csv"), fundamentals=str(restated))

    for name in ("reports", "comparisons", "rankings"):
        old = before.strategy.side_tables()[name]
        new = after.strategy.side_tables()[name]
        old, new = old[old["date"] <= str(d.date())], new[new["date"] <= str(d.date())]
        assert len(old) > 0
        pd.testing.assert_frame_equal(old.reset_index(drop=True), new.reset_index(drop=True))
    early = [json.dumps(r) for r in before.decisions if r["date"] <= str(d.date())]
    assert early == [json.dumps(r) for r in after.decisions if r["date"] <= str(d.date())]
    def late(result):
        reports = result.strategy.side_tables()["reports"]
        return reports[reports["date"] > str(d.date())]["report"].tolist()

    assert late(before) != late(after)  # the later data did reach the later reports
    experts = set(before.strategy.side_tables()["reports"]["expert"])
    assert experts == {"news", "market", "alpha", "fundamental"}


def test_fitting_never_sees_a_test_period_label(tmp_path, prices):
    base = _run(prices)
    frames = synthetic_bars(TICKERS, 300, seed=4)
    for frame in frames.values():
        later = pd.to_datetime(frame["Date"]) >= pd.Timestamp(TRAIN_END)
        frame.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= np.linspace(0.5, 2, later.sum())[:, None]
    changed = _run(write_ticker_dir(tmp_path / "changed", frames))
    first, second = base.strategy.fitted[0], changed.strategy.fitted[0]
    assert first["id"] == second["id"]  # same training rows and labels, bit for bit
    assert second["loaded"] is True
    assert base.strategy.training_period[1] < TRAIN_END


def test_rank_mode_holds_exactly_k_and_reports_rank_ic(tmp_path, prices):
    result = _run(prices, {"top_k": 2})
    weights = result.weights
    assert ((weights > 0).sum(axis=1) == 2).all()
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert len(weights) == len(pd.bdate_range("2020-01-02", periods=300)[219:][::5])
    ranking = result.metrics["ranking"]
    assert ranking["horizon"] == 5 and ranking["dates"] == len(weights) - 1  # the last has no realized return yet
    out = write_run_directory(result, tmp_path / "run")
    rankings = pd.read_parquet(out / "rankings.parquet")
    assert set(rankings["rank"]) == set(range(1, len(TICKERS) + 1))
    assert (pd.read_parquet(out / "comparisons.parquet").groupby("date").size() == 15).all()  # all pairs of 6


def test_n_drop_limits_names_replaced_per_rebalance(prices):
    result = _run(prices, {"top_k": 3, "n_drop": 1, "general_expert": "random"})
    held = [set(row[row > 0].index) for _, row in result.weights.iterrows()]
    assert all(len(h) == 3 for h in held)
    assert all(len(now - before) <= 1 for before, now in zip(held, held[1:]))
    assert any(now != before for before, now in zip(held, held[1:]))


def test_top_k_dropout_rules():
    order = ["A", "B", "C", "D", "E"]
    assert top_k_dropout(order, set(), 2) == ["A", "B"]
    assert top_k_dropout(order, {"D", "E"}, 2, n_drop=1) == ["A", "D"]  # E (worst) replaced by A
    assert top_k_dropout(order, {"D", "E"}, 2, n_drop=0) == ["D", "E"]
    assert top_k_dropout(["A", "B", "C"], {"Z", "C"}, 2, n_drop=0) == ["A", "C"]  # Z cannot be traded: always replaced


@pytest.mark.parametrize("method", ["all-pairs", "bubble", "quicksort", "budgeted"])
def test_every_ranking_method_runs_in_the_strategy(prices, method):
    params = {"ranking": method, "general_expert": "random", "top_k": 2}
    if method == "budgeted":
        params["budget"] = 9
    result = _run(prices, params)
    rankings = result.strategy.side_tables()["rankings"]
    assert ((result.weights > 0).sum(axis=1) == 2).all()
    if method == "budgeted":
        assert rankings["comparisons"].max() <= 9


def test_predict_mode_reports_accuracy_and_mcc(prices):
    result = _run(prices, {"mode": "predict"})
    prediction = result.metrics["prediction"]
    assert prediction["predictions"] > 0 and 0 <= prediction["accuracy"] <= 1
    assert result.weights.isin([0.0, 1 / len(TICKERS)]).all().all()


def test_experts_can_be_dropped_and_a_generating_model_writes_reports(prices):
    result = _run(prices, {"experts": "market,alpha", "general_expert": "random", "expert_model": "fake:writer"})
    reports = result.strategy.side_tables()["reports"]
    assert set(reports["expert"]) == {"market", "alpha"}
    assert not reports["report"].str.startswith("AAA over the last").any()  # the writer's text, not the facts
    usage = {m["spec"]: m for m in result.strategy.models()}
    assert usage["fake:writer"]["model_calls"] > 0


def test_each_expert_can_have_its_own_model_and_every_model_reports_its_usage(prices):
    calls = {}

    def backend(target, options):
        calls[target] = FakeBackend(f"fake:{target}")
        return calls[target]

    model_module.BACKENDS["fake"] = backend
    result = _run(prices, {"experts": "market,alpha", "general_expert": "fake:judge", "expert_model": "fake:writer", "alpha_model": "fake:quant"})
    # the Alpha expert's prompts reach its own model, the Market expert's the shared one, as system + user messages
    alpha = [p for batch in calls["quant"].calls for p in batch]
    market = [p for batch in calls["writer"].calls for p in batch]
    assert alpha and all(p.system.startswith("You are the Alpha expert") and p.user.startswith("Alpha factors of") for p in alpha)
    assert market and all(p.system.startswith("You are the Market expert") for p in market)
    judged = [p for batch in calls["judge"].calls for p in batch]
    assert judged and all(p.system.startswith("You are the General Expert") and p.user.startswith("Stock A (") for p in judged)
    reports = result.strategy.side_tables()["reports"]
    dates = reports["date"].nunique()
    assert len(alpha) == len(market) == dates * len(TICKERS)  # one report per (ticker, date, expert), however many pairs read it
    usage = {m["spec"]: m for m in result.strategy.models()}
    assert set(usage) == {"fake:writer", "fake:quant", "fake:judge"} and all(u["model_calls"] > 0 for u in usage.values())


def test_bad_parameters_get_one_line(prices):
    with pytest.raises(TradesimError, match="--experts"):
        _run(prices, {"experts": "news,gossip"})
    with pytest.raises(TradesimError, match="--budget"):
        _run(prices, {"budget": 10})
    with pytest.raises(TradesimError, match="--top-k"):
        _run(prices, {"top_k": 6})


def test_cli_runs_tradexpert_on_all_tickers_of_a_source(tmp_path, prices):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["backtest", "--strategy", "tradexpert", "--tickers", "all", "--data", str(prices), "--train-end", TRAIN_END,
         "--general-expert", "random", "--experts", "market,alpha", "--top-k", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["tickers"] == sorted(TICKERS)
    assert run["config"]["tickers"] == "all"
    ranking = json.loads((out / "metrics.json").read_text())["ranking"]
    assert "rank_ic_mean" in ranking
    shown = next(line for line in result.output.splitlines() if line.startswith("rank_ic_mean"))
    assert shown.split()[1] == ("n/a" if ranking["rank_ic_mean"] is None else f"{ranking['rank_ic_mean']:.3f}")  # in the terminal table


def test_factors_use_no_later_rows(prices):
    data = load_market_data(str(prices), TICKERS)
    full_view = data.view(data.sessions[-1])
    panel = {name: full_view.field(name) for name in ("open", "high", "low", "close", "volume")}
    full = compute_factors(panel)
    for t in (FACTOR_HISTORY + 5, 200):
        cut = compute_factors({name: frame.iloc[: t + 1] for name, frame in panel.items()})
        for name in FACTORS:
            np.testing.assert_allclose(cut[name].iloc[-1], full[name].iloc[t], rtol=1e-9, atol=1e-12, err_msg=name)


def test_fundamentals_are_seen_only_once_published(tmp_path, prices):
    path = _fundamentals(tmp_path / "f.csv", restated="2020-12-15")
    data = load_market_data(str(prices), TICKERS, fundamentals=str(path))
    def revenue(day):
        table = data.view(pd.Timestamp(day)).fundamentals()
        return table.set_index("ticker").loc["AAA", ["value", "previous_value"]].tolist()
    assert data.view(pd.Timestamp("2020-07-29")).fundamentals().empty  # published 07-30: visible from its evening
    assert revenue("2020-07-31") == [100, None] or np.isnan(revenue("2020-07-31")[1])
    assert revenue("2020-10-30") == [110, 100]
    assert revenue("2020-12-15") == [110, 100]  # a date-only restatement counts from the end of its day
    assert revenue("2020-12-16") == [50, 100]


@pytest.mark.parametrize(
    "rows,message",
    [
        ("ticker,period_end,field,value\nAAA,2020-06-30,revenue,1\n", "missing required column 'published_at'"),
        ("ticker,period_end,published_at,field,value\nAAA,2020-06-30,2020-05-01,revenue,1\n", "line 2: published_at 2020-05-01 is before"),
        ("ticker,period_end,published_at,field,value\nAAA,2020-06-30,2020-07-30,revenue,lots\n", "line 2: value 'lots' is not a number"),
        ("ticker,period_end,published_at,field,value\nAAA,06/31/2020,2020-07-30,revenue,1\n", "line 2: unparseable date"),
    ],
)
def test_bad_fundamentals_files_get_one_line(tmp_path, prices, rows, message):
    path = tmp_path / "f.csv"
    path.write_text(rows)
    with pytest.raises(TradesimError, match=message):
        load_market_data(str(prices), TICKERS, fundamentals=str(path))


def test_rank_ic_and_prediction_quality_on_known_values():
    dates = pd.date_range("2021-01-01", periods=3)
    realized = pd.DataFrame([[0.01, 0.02, 0.03], [0.03, 0.02, 0.01], [0.0, 0.1, 0.2]], index=dates, columns=list("ABC"))
    scores = pd.DataFrame([[1, 2, 3], [1, 2, 3], [np.nan, 2, 3]], index=dates, columns=list("ABC"), dtype=float)
    quality = rank_ic(scores, realized)
    assert quality["dates"] == 2 and quality["rank_ic_mean"] == pytest.approx(0.0)  # +1 and -1; the third has 2 names
    predicted = pd.DataFrame([[1.0, 0.0, np.nan]], index=dates[:1], columns=list("ABC"))
    truth = pd.DataFrame([[0.01, 0.02, 0.03]], index=dates[:1], columns=list("ABC"))
    assert prediction_quality(predicted, truth)["accuracy"] == 0.5


@pytest.mark.parametrize("mode", ["predict", "rank"])
def test_lora_fine_tunes_an_hf_general_expert_on_training_labels_only(tmp_path, prices, mode):
    from llm_helpers import save_tiny_llama

    model_dir = save_tiny_llama(tmp_path / "tiny")
    params = {"mode": mode, "general_expert": f"hf:{model_dir}", "fine_tune": "lora", "lora_examples": 24, "experts": "market",
              "rebalance_every": 5, "top_k": 2}
    first = _run(prices, params)
    record = first.strategy.describe()["fitted_models"][-1]
    assert record["role"] == "lora" and record["trained"] and record["examples"] == 24 and len(record["epoch_losses"]) == 1
    adapter = tmp_path / "home" / "models" / record["content_hash"]
    assert (adapter / "adapter_config.json").is_file()
    model = first.strategy.models()[0]
    assert json.loads(model["fingerprint"])["adapter"] == record["content_hash"] and model["model_calls"] > 0

    # test-period prices change: the adapter (its hash covers every prompt and label) is the same one, loaded
    frames = synthetic_bars(TICKERS, 300, seed=4)
    for frame in frames.values():
        later = pd.to_datetime(frame["Date"]) >= pd.Timestamp(TRAIN_END)
        frame.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= np.linspace(0.5, 2, later.sum())[:, None]
    again = _run(write_ticker_dir(tmp_path / "changed", frames), params)
    reloaded = again.strategy.describe()["fitted_models"][-1]
    assert reloaded["content_hash"] == record["content_hash"] and not reloaded["trained"]
    compared = CliRunner().invoke(main, ["compare", str(write_run_directory(first, tmp_path / "run"))])
    assert compared.exit_code == 0 and f"hf:{model_dir} + LoRA, experts market)" in compared.output


def test_lora_needs_a_local_general_expert(prices):
    with pytest.raises(TradesimError, match="--fine-tune lora: needs --general-expert to be a local model"):
        _run(prices, {"general_expert": "fitted", "fine_tune": "lora"})


def test_a_budget_too_small_for_budgeted_ranking_is_refused_at_parameter_checking():
    tickers = tuple(f"T{i:02d}" for i in range(20))
    with pytest.raises(TradesimError, match=r"--budget 10: .* needs at least 30"):
        TradExpert(tickers, {"ranking": "budgeted", "budget": 10, "top_k": 5})
    TradExpert(tickers, {"ranking": "budgeted", "budget": 30, "top_k": 5})


def test_one_missing_bar_or_no_volume_column_keeps_every_ticker_in_the_ranking(tmp_path):
    frames = synthetic_bars(TICKERS, 300, seed=4)
    null_day = 240
    frames["CCC"].loc[null_day, ["Open", "High", "Low", "Close", "Adj Close", "Volume"]] = np.nan  # a vendor's null row
    frames["DDD"].loc[200:260:7, "Volume"] = 0  # zero-volume days
    result = _run(write_ticker_dir(tmp_path / "nulls", frames))
    rankings = pd.DataFrame(result.strategy.tables["rankings"])
    assert rankings.groupby("date")["ticker"].nunique().eq(len(TICKERS)).all()  # nobody dropped for weeks
    assert not any("left out" in note for note in result.notes)
    without_volume = {t: f.drop(columns=["Volume"]) for t, f in synthetic_bars(TICKERS, 300, seed=4).items()}
    quiet = _run(write_ticker_dir(tmp_path / "no-volume", without_volume))
    assert pd.DataFrame(quiet.strategy.tables["rankings"]).groupby("date")["ticker"].nunique().eq(len(TICKERS)).all()
    reports = pd.DataFrame(quiet.strategy.tables["reports"])
    assert reports["report"].str.contains("volume not given").any()


def test_a_ticker_left_out_of_a_ranking_is_named_in_the_notes_with_its_dates(tmp_path):
    frames = synthetic_bars(TICKERS, 300, seed=4)
    frames["EEE"].loc[250:253, ["Open", "High", "Low", "Close", "Adj Close", "Volume"]] = np.nan  # four missing bars in a row
    result = _run(write_ticker_dir(tmp_path / "gap", frames))
    note = next(note for note in result.notes if "left out" in note)
    assert "EEE on " in note and "listed tickers were left out" in note


# ---------------------------------------------------------------- trained specialists (the paper's experts)
def _trained(model_dir, **more):
    return {"market_expert": "reprogrammed", "market_llm": f"hf:{model_dir}", "alpha_expert": "lightgbm", "news_expert": "trained",
            "fundamental_expert": "trained", "prototypes": 40, "reprogram_layers": 1, "specialist_samples": 120, **more}


@pytest.mark.parametrize("save", ["save_tiny_llama", "save_tiny_gpt2"])
def test_reprogramming_trains_its_own_layers_only_and_leaves_the_language_model_as_loaded(tmp_path, save):
    import llm_helpers
    import torch

    from tradesim.llm import load_model
    from tradesim.models.reprogramming import Reprogrammer, ReprogrammingSettings, fit_or_load_reprogrammed, patch_count, trunk

    language_model = load_model(f"hf:{getattr(llm_helpers, save)(tmp_path / 'lm')}", cache_mode="off")
    network = language_model.backend.model
    loaded = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    settings = ReprogrammingSettings(prototypes=30, layers=1, epochs=2, patience=2)
    rng = np.random.default_rng(0)
    windows = 100 + rng.normal(size=(40, 5, 32)).cumsum(-1)
    labels = (windows[:, 3, -1] > windows[:, 3, 0]).astype(float)
    prompts = [f"Input statistics: window {i}" for i in range(40)]

    model = fit_or_load_reprogrammed(language_model, windows, prompts, labels, settings, about={"test": save})
    width = network.get_input_embeddings().weight.shape[1]
    prototypes = model.layer.prototypes(network.get_input_embeddings().weight.detach())
    assert prototypes.shape == (30, width)
    assert model.layer(torch.zeros(3, 5, 32), prototypes).shape == (3, 5 * patch_count(32, settings), width) == (3, 5 * 4, width)
    layers = next(c for c in trunk(network, 1).children() if isinstance(c, torch.nn.ModuleList))
    assert len(layers) == 1  # Time-LLM's llm_layers: the first layer only
    assert all(not p.requires_grad for p in network.parameters()) and all(p.requires_grad for p in model.layer.parameters())
    assert all(torch.equal(loaded[name], tensor) for name, tensor in network.state_dict().items())  # not one weight moved
    torch.manual_seed(settings.seed)
    fresh = Reprogrammer(5, 32, *network.get_input_embeddings().weight.shape, settings)  # the weights training started from
    moved = {name for name, tensor in model.layer.state_dict().items() if not torch.equal(tensor, fresh.state_dict()[name])}
    assert {"patch_embedding.weight", "mapping.weight", "query.weight", "key.weight", "value.weight", "out.weight", "head.weight"} <= moved
    probabilities = model.predict(windows[:6], prompts[:6])
    assert probabilities.shape == (6,) and ((probabilities > 0) & (probabilities < 1)).all()
    stored = tmp_path / "home" / "models" / model.record["id"]
    assert (stored / "weights.pt").is_file() and not model.record["loaded"]
    assert json.loads((stored / "model.json").read_text())["frozen_parameters"] == sum(p.numel() for p in network.parameters())
    again = fit_or_load_reprogrammed(language_model, windows, prompts, labels, settings, about={"test": save})
    assert again.record["loaded"] and np.array_equal(again.predict(windows[:6], prompts[:6]), probabilities)


def test_trained_specialists_see_nothing_later_and_fit_on_the_training_period_only(tmp_path, prices):
    from llm_helpers import save_tiny_llama

    dates = pd.bdate_range("2020-01-02", periods=300)
    d = dates[250]
    params = _trained(save_tiny_llama(tmp_path / "tiny"))
    news = _news(tmp_path / "news.csv", dates)
    before = _run(prices, params, news=str(news), fundamentals=str(_fundamentals(tmp_path / "f.csv")))

    frames = synthetic_bars(TICKERS, 300, seed=4)
    for frame in frames.values():
        later = pd.to_datetime(frame["Date"]) > d
        frame.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= 3.0
        frame.loc[later, "Volume"] *= 5
        frame.loc[~later, "Adj Close"] *= 0.5  # a distribution after d restates every earlier adjusted close
    more_news = pd.concat([pd.read_csv(news), pd.read_csv(_news(tmp_path / "later.csv", dates[dates > d], " LATER"))])
    more_news.to_csv(tmp_path / "news2.csv", index=False)
    restated = _fundamentals(tmp_path / "f2.csv", restated=str(dates[260].date()))
    after = _run(write_ticker_dir(tmp_path / "changed", frames), params, news=str(tmp_path / "news2.csv"), fundamentals=str(restated))

    def fitted(result):
        return {f["role"]: f["id"] for f in result.strategy.describe()["fitted_models"] if "role" in f}

    assert set(fitted(before)) == {"market analyst (reprogrammed)", "alpha expert (lightgbm)", "news analyst (trained)", "fundamental analyst (trained)"}
    assert fitted(before) == fitted(after)  # the same training data: the same stored models, loaded
    reports = before.strategy.side_tables()["reports"]
    for name in ("reports", "comparisons", "rankings"):
        old, new = before.strategy.side_tables()[name], after.strategy.side_tables()[name]
        old, new = old[old["date"] <= str(d.date())], new[new["date"] <= str(d.date())]
        pd.testing.assert_frame_equal(old.reset_index(drop=True), new.reset_index(drop=True), check_exact=True)
    early = [json.dumps(r) for r in before.decisions if r["date"] <= str(d.date())]
    assert early and early == [json.dumps(r) for r in after.decisions if r["date"] <= str(d.date())]
    late = reports[reports["date"] > str(d.date())]
    changed = after.strategy.side_tables()["reports"]
    assert not late["prediction"].reset_index(drop=True).equals(changed[changed["date"] > str(d.date())]["prediction"].reset_index(drop=True))

    # every trained expert's prediction is in its report, in the reports table and in the decision rows
    assert reports["prediction"].notna().all()
    first = reports[reports["date"] == reports["date"].min()].set_index("expert")
    assert "Reprogrammed Market Analyst: P(rise over the next 5 sessions)" in first.loc["market", "report"].iloc[0]
    assert "LightGBM Alpha score: P(beats the day's median ticker" in first.loc["alpha", "report"].iloc[0]
    assert "Trained News Analyst" in first.loc["news", "report"].iloc[0]
    assert "strong rise" in first.loc["fundamental", "report"].iloc[0] and "likeliest" in first.loc["fundamental", "report"].iloc[0]
    assert set(before.decisions[0]["specialists"]) == {"news", "market", "alpha", "fundamental"}
    assert "experts news:trained,market:reprogrammed,alpha:lightgbm,fundamental:trained" in before.strategy.label

    # a paper account's nightly process: the fitted state, restored, decides the same (the reprogramming layer from its store)
    data = load_market_data(str(prices), TICKERS, news=str(news), fundamentals=str(tmp_path / "f.csv"))
    restored = TradExpert(TICKERS, {**FAST, **params}, seed=before.strategy.seed, runtime=before.strategy.runtime)
    restored.load_state(before.strategy.state())
    day = pd.Timestamp(before.decisions[-1]["date"])
    assert restored.decide_batch([data.view(day)])[0].weights == before.strategy.decide_batch([data.view(day)])[0].weights


def test_lightgbm_alpha_explains_its_score_by_factor_contributions_and_works_in_the_ablation(prices):
    result = _run(prices, {"mode": "predict", "experts": "market,alpha", "alpha_expert": "lightgbm", "alpha_factors": 3})
    alpha = result.strategy.specialists["alpha"]
    booster = alpha["booster"]
    assert booster.features == list(FACTORS) and alpha["relative"]  # six tickers: P(beats the day's median)
    data = load_market_data(str(prices), TICKERS)
    view = data.view(data.sessions[-1])
    factors = compute_factors({name: view.field(name) for name in ("open", "high", "low", "close", "volume")})
    rows = np.column_stack([factors[name].iloc[-1].to_numpy() for name in booster.features])
    probability = booster.predict(rows)
    contributions = np.asarray(booster.booster.predict(rows, pred_contrib=True))
    assert np.allclose(contributions.sum(axis=1), np.log(probability / (1 - probability)))  # SHAP values add up to the log-odds
    reports = result.strategy.side_tables()["reports"]
    text = reports[reports["expert"] == "alpha"]["report"].iloc[-1]
    shown = text.split("(contribution in log-odds): ")[1].split("; ")
    assert len(shown) == 3 and all(part.split(" = ")[0] in FACTORS for part in shown)
    assert "experts market,alpha:lightgbm" in result.strategy.label and "prediction" in result.metrics
    again = _run(prices, {"mode": "predict", "experts": "market,alpha", "alpha_expert": "lightgbm", "alpha_factors": 3}, reuse_decisions=False)
    assert [f["loaded"] for f in again.strategy.fitted if f.get("role") == "alpha expert (lightgbm)"] == [True]


def test_trained_specialist_settings_that_cannot_work_get_one_line(prices):
    with pytest.raises(TradesimError, match="--market-expert reprogrammed: the market expert is not among --experts news"):
        _run(prices, {"experts": "news", "market_expert": "reprogrammed"})
    with pytest.raises(TradesimError, match="--market-llm 'minilm': the reprogrammed Market Analyst needs a local model"):
        _run(prices, {"market_expert": "reprogrammed", "market_llm": "minilm"})
    with pytest.raises(TradesimError, match="--fundamental-expert trained: no fundamentals were published before --train-end"):
        _run(prices, {"fundamental_expert": "trained", "experts": "fundamental"})
    result = CliRunner().invoke(main, ["backtest", "--strategy", "tradexpert", "--tickers", "all", "--data", str(prices),
                                       "--train-end", TRAIN_END, "--alpha-expert", "boosted"])
    assert result.exit_code != 0 and "--alpha-expert" in result.output and "Traceback" not in result.output


def test_the_trained_news_analyst_reads_the_report_its_model_wrote_as_in_training(tmp_path, prices):
    dates = pd.bdate_range("2020-01-02", periods=300)
    result = _run(prices, {"experts": "news,market", "news_expert": "trained", "news_model": "fake:writer"},
                  news=str(_news(tmp_path / "news.csv", dates)))
    reports = result.strategy.side_tables()["reports"]
    news = reports[reports["expert"] == "news"].tail(6)
    written = [report.split(" Trained News Analyst: ")[0] for report in news["report"]]
    assert not any(text.startswith("News on ") for text in written)  # the writer's report, not the facts
    vectors = result.strategy.model("fake:enc").embed(written)
    assert np.allclose(result.strategy.specialists["news"]["classifier"].predict(vectors), news["prediction"].to_numpy())
