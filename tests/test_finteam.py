"""FinTeamExperts: corpora, decontamination, both stages on tiny random models, the gate, the
evaluation harness, the CLI and the strategy, all on fixtures the tests make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.finteam_helpers import PLANTED_FPB, PLANTED_OVERLAP, save_tiny_bert, write_shared
from tests.helpers import synthetic_bars, write_ticker_dir
from tests.llm_helpers import save_tiny_llama

CUTOFF = "2014-09-01"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and lose a lot when the cores are busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "model")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return write_shared(tmp_path_factory.mktemp("shared"))


def tiny_settings(backbone: str, **extra):
    from strategies.finteam.build import BuildSettings, with_overrides

    values = dict(backbone=backbone, cutoff=CUTOFF, steps=3, batch_size=4, block_length=32, held_out_blocks=4, team_steps=60, team_eval_every=20, acl18_train_limit=60)
    values.update(extra)
    return with_overrides(BuildSettings(), **values)


@pytest.fixture(scope="module")
def built(tiny_bert, shared, tmp_path_factory):
    from strategies.finteam.build import build

    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("TRADESIM_HOME", str(home))
    try:
        yield build(tiny_settings(f"hf:{tiny_bert}"), shared, progress=False, echo=lambda *_: None), home
    finally:
        patch.undo()


# ------------------------------------------------------------------ corpora and quant text
def test_flare_row_matches_the_documented_formula():
    from tradesim.evaluation.flare import flare_rows, format_rows

    days = pd.bdate_range("2020-01-01", periods=31)
    adj = pd.Series(np.linspace(100, 130, 31), index=days)
    bars = pd.DataFrame({"open": adj * 1.01, "high": adj * 1.02, "low": adj * 0.99, "close": adj, "adj_close": adj})
    row = format_rows(flare_rows(bars))[-1].split(",")
    assert row[0] == f"{days[-1]:%Y-%m-%d}" and len(row) == 12
    assert row[1:4] == ["1.0", "2.0", "-1.0"]
    assert float(row[5]) == round((130 / 129 - 1) * 100, 1)
    assert float(row[6]) == round((adj.iloc[-5:].mean() / 130 - 1) * 100, 1)
    split = bars.copy()
    split.loc[days[-1], ["open", "high", "low", "close"]] /= 2  # raw prices halve on a 2:1 split; adj does not
    assert format_rows(flare_rows(split))[-1].split(",")[4] == row[4]  # close taken from the adjusted close there


def test_decontamination_removes_exact_and_overlapping_sentences():
    from strategies.finteam.corpora import Decontaminator

    cleaner = Decontaminator()
    cleaner.add("fpb", [PLANTED_FPB + " ."])
    removed: dict[str, int] = {}
    document = f"Rates were unchanged. {PLANTED_FPB.upper()}. {PLANTED_OVERLAP}. Growth was solid."
    assert cleaner.clean(document, removed) == "Rates were unchanged. Growth was solid."
    assert removed == {"fpb": 2}


def test_corpora_keep_only_text_public_before_the_cutoff(shared):
    from strategies.finteam.corpora import read_source
    from tradesim.evaluation.flare import HEADER

    cutoff = pd.Timestamp(CUTOFF)
    prices = {"stocknet": shared / "stocknet" / "price_raw", "sp500": shared / "sp500" / "sp500_top100_daily_2012_2021.csv"}
    minutes = read_source(shared / "corpora", "minutes", cutoff, prices)
    assert minutes and all(d.public < cutoff for d in minutes)
    assert max(d.public for d in minutes) > pd.Timestamp("2014-07-01")  # dated by release, not meeting
    assert all(d.public < cutoff for d in read_source(shared / "corpora", "tenk:7", cutoff, prices))
    assert read_source(shared / "corpora", "calls", cutoff, prices) == []  # fiscal 2020: public by 2021-03-31 at the latest
    assert len(read_source(shared / "corpora", "calls", pd.Timestamp("2021-04-01"), prices)) == 1
    assert read_source(shared / "corpora", "tatqa", cutoff, prices) == []
    rows = [line.split(",")[0] for d in read_source(shared / "corpora", "quant:stocknet", cutoff, prices) for line in d.text.splitlines()[1:] if line[:2] == "20"]
    assert rows and max(rows) < CUTOFF and all(HEADER not in r for r in rows)


def test_no_test_sentence_stays_in_training(shared):
    from tradesim.evaluation.text import normalise
    from tradesim.evaluation.tasks import load_splits

    path = shared / "sentiment" / "fpb" / "Sentences_50Agree.txt"
    original = path.read_text()
    try:
        flare_sentence = json.loads((shared / "sentiment" / "fpb" / "flare_valid.jsonl").read_text().splitlines()[0])["sentence"]
        path.write_text(original + "\n".join(f"{flare_sentence}@neutral" for _ in range(20)) + "\n")
        for split in load_splits("fpb", shared):
            tests = {normalise(t) for t in split.test["text"]}
            assert not tests & {normalise(t) for t in split.train["text"]}
            assert not tests & {normalise(t) for t in split.valid["text"]}
        assert sum(load_splits("fpb", shared)[0].record["dropped_as_test_duplicates"].values()) >= 16
    finally:
        path.write_text(original)


# ------------------------------------------------------------------ stage 1
@pytest.mark.parametrize("kind", ["encoder", "causal", "causal-lora"])
def test_stage_one_lowers_the_held_out_loss_on_its_own_text(kind, tiny_bert, tmp_path):
    from strategies.finteam.backbone import Backbone
    from strategies.finteam.pretrain import PretrainSettings, held_out_loss, pretrain

    source = str(tiny_bert) if kind == "encoder" else str(save_tiny_llama(tmp_path / "llama"))
    settings = PretrainSettings(steps=40, batch_size=8, block_length=32, learning_rate=3e-3, lora_rank=4 if kind == "causal-lora" else 0)
    text = ["the committee noted inflation rates and policy. " * 40] * 4
    backbone = Backbone(source, lora_rank=settings.lora_rank)
    blocks = backbone.blocks(text, 32)[:8]
    before = held_out_loss(backbone, blocks, 8)
    pretrain(backbone, text, settings)
    assert backbone.kind == ("encoder" if kind == "encoder" else "causal")
    assert not hasattr(backbone.model, "peft_config") or not backbone.model.peft_config  # LoRA merged away
    assert held_out_loss(backbone, blocks, 8) < before - 0.5
    assert held_out_loss(backbone, blocks, 8) == held_out_loss(backbone, blocks, 8)  # fixed masks


# ------------------------------------------------------------------ the gate
def test_the_hard_gate_picks_exactly_one_expert_per_role():
    import torch

    from strategies.finteam.team import TeamSettings, build_team

    torch.manual_seed(0)
    team = build_team([[0, 1], [2, 3], [4, 5]], 8, {"fpb": 3}, TeamSettings(hidden=8, dropout=0.0))
    features = torch.randn(64, 6, 8)
    for training in (True, False):
        team.train(training)
        _, gate = team(features, "fpb")
        assert gate["choices"].shape == (64, 3) and gate["choices"].max() <= 1
        assert torch.allclose(gate["roles"].sum(-1), torch.ones(64))
    team.eval()
    _, gate = team(features, "fpb")
    assert torch.equal(gate["choices"], torch.stack([p.argmax(-1) for p in gate["within"]], 1))
    # hard: an expert that is not chosen does not reach the output (routing made blind to it)
    team.gate.weight.data[:, 8:16] = 0
    out, gate = team(features, "fpb")
    changed = features.clone()
    changed[:, 1] = torch.randn(64, 8) * 100
    out_changed, gate_changed = team(changed, "fpb")
    assert torch.equal(gate["choices"], gate_changed["choices"])
    first = gate["choices"][:, 0] == 0
    assert 0 < first.sum() < 64
    assert torch.allclose(out[first], out_changed[first], atol=1e-5)
    assert not torch.allclose(out[~first], out_changed[~first], atol=1e-3)
    # training: the straight-through pick is one-hot, so the same holds per sample
    team.train()
    torch.manual_seed(1)
    out_t, gate_t = team(features, "fpb")
    torch.manual_seed(1)
    out_tc, gate_tc = team(changed, "fpb")
    first_t = gate_t["choices"][:, 0] == 0
    assert torch.equal(gate_t["choices"], gate_tc["choices"])
    assert torch.allclose(out_t[first_t], out_tc[first_t], atol=1e-5)


def test_the_entropy_term_keeps_experts_in_use():
    from strategies.finteam.team import TaskData, TeamSettings, predict, train_team

    rng = np.random.default_rng(0)
    n, dim = 400, 8
    x = rng.normal(size=(n, 4, dim)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.int64)  # only the first expert of the first role knows the label
    data = [TaskData("fpb", x[:300], y[:300], x[300:], y[300:])]
    usage = {}
    for balance in (0.0, 5.0):
        team, _ = train_team([[0, 1], [2, 3]], data, {"fpb": 2}, TeamSettings(steps=400, eval_every=400, balance=balance, hidden=16))
        _, choices, _ = predict(team, x, "fpb")
        usage[balance] = min(np.bincount(choices[:, r], minlength=2).min() for r in range(2)) / n
    assert usage[5.0] > usage[0.0]
    assert usage[5.0] > 0.1


@pytest.mark.parametrize("count", [1, 2])
def test_top_layers_over_stored_token_states_give_the_experts_features(count, tiny_bert, tmp_path):
    """Before tuning, running an expert's top layers over the stored token states reproduces the
    expert's own features (up to the float16 storage), whatever the texts' lengths."""
    import torch

    from strategies.finteam.backbone import Backbone, HiddenSet, top_layers, top_pooled

    backbone = Backbone(str(tiny_bert), max_length=24)
    rng = np.random.default_rng(0)
    from tests.finteam_helpers import sentence

    texts = [sentence(rng, int(k)) for k in rng.integers(2, 30, 12)]  # some longer than 24 tokens
    expected = backbone.features(texts, batch_size=5)
    states = backbone.hidden(texts, count, batch_size=7)
    assert len(states) == 12
    states.take([5, 2]).save(tmp_path / "part.npz")
    part = HiddenSet.load(tmp_path / "part.npz")
    assert len(part) == 2 and all(torch.equal(a, b) for a, b in zip(part.batch([1, 0]), states.batch([2, 5])))
    layers = top_layers(backbone.model, count).eval()
    rows = np.array([3, 0, 11, 7])
    with torch.no_grad():
        got = top_pooled(layers, backbone.model.config, *states.take(rows).batch(np.arange(4))).numpy()
    assert np.abs(got - expected[rows]).max() < 2e-2 * np.abs(expected).max()
    assert np.abs(got - expected[rows[::-1]]).max() > 0.1 * np.abs(expected).max()  # rows stay rows
    layers[0].output.dense.weight.data.zero_()  # the copies are the team's own
    assert backbone.model.bert.encoder.layer[-count].output.dense.weight.abs().sum() > 0


def test_unfreeze_top_tunes_only_the_chosen_experts_layers(tiny_bert):
    """A team with tuned top layers learns what frozen features hide, moves only its copies, and an
    expert that is not chosen cannot change a prediction at inference."""
    import torch

    from dataclasses import replace

    from strategies.finteam.backbone import Backbone, HiddenSet, top_layers
    from strategies.finteam.team import TaskData, TeamSettings, predict, train_team

    backbone = Backbone(str(tiny_bert))
    config = backbone.model.config
    rng = np.random.default_rng(1)
    n, dim, length = 240, config.hidden_size, 6
    lengths = rng.integers(2, length + 1, n)
    tokens = rng.normal(size=(int(lengths.sum()), dim)).astype(np.float16)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    y = (np.array([tokens[offsets[i] : offsets[i + 1], 0].astype(np.float32).mean() for i in range(n)]) > 0).astype(np.int64)
    states = HiddenSet(tokens, offsets)
    frozen = rng.normal(size=(n, 2, dim)).astype(np.float32)  # the gate's view carries no label
    sets = [states, HiddenSet(rng.normal(size=tokens.shape).astype(np.float16), offsets)]
    train, valid = np.arange(180), np.arange(180, n)
    data = [TaskData("fpb", frozen[train], y[train], frozen[valid], y[valid], [h.take(train) for h in sets], [h.take(valid) for h in sets])]
    tops = [top_layers(backbone.model, 1) for _ in range(2)]
    before = [copy_state(t) for t in tops]
    settings = TeamSettings(steps=150, eval_every=50, hidden=16, unfreeze_top=1, tuned_learning_rate=1e-3, batch_size=16)
    team, record = train_team([[0, 1]], data, {"fpb": 2}, settings, tops=tops, config=config)
    _, frozen_record = train_team([[0, 1]], data, {"fpb": 2}, replace(settings, unfreeze_top=0))
    assert record["best_mean_valid_accuracy"] > max(0.62, frozen_record["best_mean_valid_accuracy"] + 0.1)
    moved = [any(not torch.equal(a, b) for a, b in zip(old.values(), new.state_dict().values())) for old, new in zip(before, team.tops)]
    assert any(moved)
    assert all(torch.equal(a, b) for a, b in zip(copy_state(top_layers(backbone.model, 1)).values(), before[0].values()))
    probs, choices, _ = predict(team, frozen[valid], "fpb", [h.take(valid) for h in sets])
    assert probs.shape == (60, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="token states"):
        predict(team, frozen[valid], "fpb")
    unchosen = 1 - int(np.bincount(choices[:, 0], minlength=2).argmax())
    rows = choices[:, 0] != unchosen
    with torch.no_grad():
        for parameter in team.tops[unchosen].parameters():
            parameter.add_(torch.randn_like(parameter))
    again, _, _ = predict(team, frozen[valid], "fpb", [h.take(valid) for h in sets])
    assert np.allclose(again[rows], probs[rows], atol=1e-6)


def copy_state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_unfreeze_top_refuses_what_it_cannot_tune(tmp_path):
    from tradesim.errors import TradesimError
    from strategies.finteam.backbone import check_unfreezable

    config = save_tiny_llama(tmp_path / "llama")
    from transformers import AutoConfig

    with pytest.raises(TradesimError, match="--unfreeze-top 1: supported for BERT-like encoders"):
        check_unfreezable(AutoConfig.from_pretrained(config), 1)


# ------------------------------------------------------------------ the build, evaluation, CLI
def test_build_records_everything_and_loads_on_rerun(built, tiny_bert, shared, monkeypatch):
    from strategies.finteam.build import build, loss_table_text

    result, home = built
    meta = result.meta
    assert meta["cutoff"] == CUTOFF
    assert len(meta["experts"]) == 6 and {k.split("/")[0] for k in meta["experts"]} == {"macro", "micro", "quant"}
    minutes = meta["experts"]["macro/minutes"]["corpus"]
    assert minutes["removed_sentences"]["fpb"] == 2 and minutes["latest_public"] < CUTOFF
    assert meta["experts"]["micro/financials"]["corpus"]["removed_sentences"]["fpb"] == 1
    assert set(meta["teams"]) == {f"seed-{s}{w}" for s in (5768, 78516, 944601) for w in ("", "-without-macro", "-without-micro", "-without-quant")}
    assert "fomc-78516" in meta["teams"]["seed-78516"]["trained_on"] and "fomc-5768" not in meta["teams"]["seed-78516"]["trained_on"]
    assert "the best expert on a corpus" in loss_table_text(meta)
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    monkeypatch.setattr("strategies.finteam.pretrain.pretrain", lambda *a, **k: pytest.fail("a rerun must not train"))
    monkeypatch.setattr("strategies.finteam.build.train_team", lambda *a, **k: pytest.fail("a rerun must not train"))
    again = build(tiny_settings(f"hf:{tiny_bert}"), shared, progress=False, echo=lambda *_: None)
    assert again.directory == result.directory


def test_test_labels_never_reach_training(tiny_bert, tmp_path, monkeypatch):
    """Two builds whose benchmark test labels differ (and nothing else) train identical teams."""
    import torch

    from strategies.finteam.build import build

    states = []
    for labels_seed in (1, 2):
        root = write_shared(tmp_path / f"shared{labels_seed}", seed=0, sentiment_labels_seed=labels_seed)
        monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / f"home{labels_seed}"))
        result = build(tiny_settings(f"hf:{tiny_bert}", team_steps=20, tasks=("fpb", "fiqa-sa", "fomc")), root, progress=False, echo=lambda *_: None)
        states.append(torch.load(result.directory / "teams" / "seed-5768.pt"))
    assert list(states[0]) == list(states[1])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_evaluate_prints_every_method_and_logs_the_gate(built, shared, monkeypatch):
    from strategies.finteam.evaluate import FineTuneSettings, evaluate_build
    from tradesim.evaluation.harness import results_table

    result, home = built
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    results, predictions = evaluate_build(result, shared, ("fpb", "fomc", "acl18"), FineTuneSettings(steps=2, batch_size=4), progress=False, echo=lambda *_: None)
    methods = ["TF-IDF + LR", f"frozen hf:{result.meta['settings']['backbone'][3:]} + LR", f"fine-tuned {result.meta['settings']['backbone']}", "team", "team without macro", "team without micro", "team without quant"]
    assert list(results) == methods
    assert set(results["team"]) == {"fpb", "fpb-flare", "fomc-5768", "fomc-78516", "fomc-944601", "acl18"}
    for row in results.values():
        for values in row.values():
            assert 0 <= values["accuracy"] <= 1 and -1 <= values["mcc"] <= 1
    table = results_table(results)
    assert "FOMC (3 seeds)" in table and "±" in table and "ACL18" in table
    experts = set(result.experts)
    for role in ("macro", "micro", "quant"):
        assert set(predictions[f"{role}_expert"]) <= {e for e in experts if e.startswith(role)}
    weights = predictions[["macro_weight", "micro_weight", "quant_weight"]].sum(axis=1)
    assert np.allclose(weights, 1, atol=1e-5)


def test_cli_build_and_evaluate(tiny_bert, shared, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tradesim.cli import main

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    args = ["finteam", "build", "--shared", str(shared), "--backbone", f"hf:{tiny_bert}", "--cutoff", CUTOFF, "--steps", "2", "--batch-size", "4", "--block-length", "32", "--team-steps", "20", "--tasks", "fpb,fiqa-sa", "--acl18-train-limit", "40", "--device", "cpu"]
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    directory = out.output.strip().splitlines()[-1].split("team: ")[1].split(" (")[0]
    assert "removed sentences: fpb 2" in out.output and "held-out masked-LM loss" in out.output
    evaluation = tmp_path / "eval"
    out = runner.invoke(main, ["evaluate", directory, "--task", "fiqa-sa", "--shared", str(shared), "--baseline-steps", "0", "--out", str(evaluation), "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert "FiQA-SA" in out.output and "team without quant" in out.output
    assert (evaluation / "evaluation.json").is_file() and (evaluation / "predictions.parquet").is_file()
    out = runner.invoke(main, ["evaluate", directory, "--task", "acl18", "--shared", str(shared), "--out", str(tmp_path / "e2")])
    assert out.exit_code != 0 and "was not tuned on it" in out.output and not (tmp_path / "e2").exists()


def test_cli_build_and_evaluate_with_tuned_top_layers(tiny_bert, shared, tmp_path, monkeypatch):
    import torch
    from click.testing import CliRunner

    from tradesim.cli import main

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    args = ["finteam", "build", "--shared", str(shared), "--backbone", f"hf:{tiny_bert}", "--cutoff", CUTOFF, "--steps", "2", "--batch-size", "4", "--block-length", "32", "--team-steps", "20", "--tasks", "fpb,acl18", "--acl18-train-limit", "40", "--unfreeze-top", "1", "--no-ablations"]
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    directory = Path(out.output.strip().splitlines()[-1].split("team: ")[1].split(" (")[0])
    meta = json.loads((directory / "build.json").read_text())
    assert list(meta["teams"]) == ["main"] and meta["teams"]["main"]["settings"]["unfreeze_top"] == 1
    state = torch.load(directory / "teams" / "main.pt")
    assert any(k.startswith("tops.5.0.") for k in state) and not any(k.startswith(("tops.6.", "tops.0.1.")) for k in state)  # 6 experts, 1 layer
    evaluation = tmp_path / "eval"
    out = runner.invoke(main, ["evaluate", str(directory), "--task", "fpb,acl18", "--shared", str(shared), "--baseline-steps", "0", "--out", str(evaluation)])
    assert out.exit_code == 0, out.output
    assert "team" in out.output and "team without" not in out.output
    predictions = pd.read_parquet(evaluation / "predictions.parquet")
    assert set(predictions["variant"]) == {"fpb", "fpb-flare", "acl18"} and predictions["predicted"].between(0, 2).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["finteam", "build", "--shared", "/nonexistent"], "--shared /nonexistent: no such directory"),
        (["finteam", "build", "--cutoff", "soon"], "--cutoff 'soon': expected a date"),
        (["evaluate", "finteam", "--task", "sentiment"], "--task: expected one of fpb, fiqa-sa, fomc, acl18 or all"),
        (["evaluate", "nonsense-spec"], "model spec 'nonsense-spec'"),
        (["finteam", "build", "--backbone", "hf:TINY_BERT", "--unfreeze-top", "3"], "--unfreeze-top 3: the backbone has 2 layers"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(args, message, shared, tiny_bert, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from tradesim.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    args = [a.replace("TINY_BERT", str(tiny_bert)) for a in args]
    if "--shared" not in args:
        args += ["--shared", str(shared)]
    out = CliRunner().invoke(main, args)
    assert out.exit_code != 0
    assert message in out.output and "Traceback" not in out.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_spec_scoring_goes_through_the_same_harness(shared, tmp_path, monkeypatch):
    from tradesim.evaluation.harness import evaluate_spec, results_table
    from tradesim.strategy import Runtime

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    llama = save_tiny_llama(tmp_path / "llama")
    results, described = evaluate_spec(f"hf:{llama}", shared, ("fiqa-sa",), Runtime(device="cpu", progress=False), echo=lambda *_: None)
    (name,) = results
    assert name.endswith("(zero-shot)") and results[name]["fiqa-sa"]["examples"] == 20
    assert described["model_calls"] > 0 and "FiQA-SA" in results_table(results)


# ------------------------------------------------------------------ trading
def _backtest(team_dir: Path, data: Path, tickers: str, train_end: str, **params):
    from tradesim.plugins import get_strategy
    from tradesim.backtesting import run_backtest
    from tradesim.config import resolve

    config = resolve({}, {"strategy": "finteam", "tickers": tickers, "data": str(data), "train_end": train_end, "params": {"team": str(team_dir), "team_steps": 30, **params}})
    return run_backtest(config, get_strategy("finteam"), progress=False)


def test_finteam_trades_and_logs_the_gate(built, tmp_path, monkeypatch):
    result, home = built
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    frames = synthetic_bars(("AAA", "BBB", "CCC"), sessions=260, seed=3, start="2014-06-02")
    data = write_ticker_dir(tmp_path / "prices", frames)
    run = _backtest(result.directory, data, "AAA,BBB,CCC", "2015-01-02", top_k=1)
    assert (run.weights.sum(axis=1) <= 1 + 1e-9).all() and (run.weights.max(axis=1) > 0).any()
    assert ((run.weights > 0).sum(axis=1) <= 1).all()  # top-1
    gates = [d["gate"] for d in run.decisions if d.get("gate")]
    assert gates and all(set(g) == {"macro", "micro", "quant"} for g in gates)
    logs = pd.DataFrame(run.strategy.tables["gate"])
    assert len(logs) > 0 and set(logs["ticker"]) == {"AAA", "BBB", "CCC"}
    for role in ("macro", "micro", "quant"):
        assert logs[f"{role}_expert"].str.startswith(role).all()
    assert run.strategy.describe()["fitted"]["corpus_cutoff"] == CUTOFF
    one = _backtest(result.directory, data, "AAA", "2015-01-02")
    assert one.strategy.describe()["fitted"]["examples"] > 20


def test_finteam_refuses_a_team_that_read_the_test_period(built, tmp_path, monkeypatch):
    from tradesim.errors import TradesimError

    result, home = built
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    data = write_ticker_dir(tmp_path / "prices", synthetic_bars(("AAA",), sessions=200, seed=4, start="2014-01-02"))
    with pytest.raises(TradesimError, match="its corpora run to 2014-09-01, after the test period starts"):
        _backtest(result.directory, data, "AAA", "2014-08-01")


@pytest.mark.parametrize("unfreeze_top", [0, 1])
def test_finteam_decisions_do_not_move_when_later_prices_change(unfreeze_top, built, tmp_path, monkeypatch):
    result, home = built
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    frames = synthetic_bars(("AAA", "BBB"), sessions=240, seed=5, start="2014-06-02")
    first = _backtest(result.directory, write_ticker_dir(tmp_path / "a", frames), "AAA,BBB", "2015-01-02", unfreeze_top=unfreeze_top)
    assert (first.strategy.team.tops is not None) == bool(unfreeze_top)
    changed = {t: f.copy() for t, f in frames.items()}
    later = pd.to_datetime(changed["AAA"]["Date"]) > pd.Timestamp("2015-03-02")
    for frame in changed.values():
        frame.loc[later, ["Open", "High", "Low", "Close", "Adj Close"]] *= 1.3
    second = _backtest(result.directory, write_ticker_dir(tmp_path / "b", changed), "AAA,BBB", "2015-01-02", unfreeze_top=unfreeze_top)
    a, b = pd.DataFrame(first.strategy.tables["gate"]), pd.DataFrame(second.strategy.tables["gate"])
    upto = a["date"] <= "2015-03-02"
    assert upto.sum() > 20
    pd.testing.assert_frame_equal(a[upto].reset_index(drop=True), b[b["date"] <= "2015-03-02"].reset_index(drop=True))
    assert not a[~upto].reset_index(drop=True).equals(b[b["date"] > "2015-03-02"].reset_index(drop=True))


def test_weights_missing_from_a_checkpoint_start_the_same_every_time(tiny_bert, tmp_path):
    """MiniLM ships without a masked-LM head: its fresh weights must not make stage 1 irreproducible."""
    import shutil

    from transformers import BertModel

    from strategies.finteam.backbone import Backbone

    body = tmp_path / "body"
    shutil.copytree(tiny_bert, body)
    for weights in body.glob("*.safetensors"):
        weights.unlink()
    BertModel.from_pretrained(tiny_bert).save_pretrained(body)
    first, second = Backbone(str(body)), Backbone(str(body))
    head = "cls.predictions.transform.dense.weight"
    assert first.model.state_dict()[head].equal(second.model.state_dict()[head])


def test_finteam_without_team_uses_the_newest_complete_build_and_says_so(built, tmp_path, monkeypatch):
    from tradesim.plugins import get_strategy
    from tradesim.errors import TradesimError

    result, home = built
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    (home / "models" / ".finteam-staging-unfinished").mkdir(exist_ok=True)  # a build in progress never counts
    strategy = get_strategy("finteam")(("AAA",), {})
    assert strategy.settings.team == str(result.directory)
    assert any(str(result.directory) in note and "newest complete build" in note for note in strategy.notes)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "empty"))
    with pytest.raises(TradesimError, match="no complete build under"):
        get_strategy("finteam")(("AAA",), {})
