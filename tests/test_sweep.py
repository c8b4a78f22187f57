"""Sweeps: cells are ordinary runs equal to the same backtests run alone, identified by their
resolved configuration, byte-identical whichever executor runs them, resumable after SIGKILL at
any moment, and counted together in the trial ledger (deflated Sharpe, PBO)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from tradesim import backtest
from tradesim.cli import main
from tradesim.errors import TradesimError
from tradesim.evidence import trials
from tradesim.rundir import RUN_FILES
from tradesim.sweep.executors import CellTask, run_cell
from tradesim.sweep.spec import load_sweep
from tradesim.sweep.sweep import list_cells, load_datasets, run_sweep

SPEC = """
[base]
strategy = "momentum"
tickers = ["AAPL", "MSFT", "GOOG", "AMZN"]
start = "2015-01-01"
sig_reps = 100
[base.params]
rebalance_every = 2
top_k = 2

[grid.params]
lookback = [5, 20]

[[zip]]
cost_bps = [0, 5]
slippage_bps = [0, 2]
"""
CELLS = 4
TRIAL_KEYS = ("study", "trial", "trials", "trial_rank", "trial_sharpe_variance", "deflated_sharpe", "trials_in_words", "in_words", "deflation")


def _spec(directory: Path, text: str = SPEC) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spec.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    spec = _spec(root)
    return spec, root / "serial", run_sweep(spec, root / "serial", executor_name="serial")


def _metrics_bytes(out: Path) -> dict[str, bytes]:
    return {cell.name: (cell / "metrics.json").read_bytes() for cell in sorted((out / "cells").iterdir())}


def test_list_prints_every_cell_and_runs_nothing(tmp_path):
    spec = _spec(tmp_path)
    result = CliRunner().invoke(main, ["sweep", str(spec), "--list"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == CELLS + 1 and lines[-1].startswith(f"{CELLS} cells; study sweep-")
    assert lines[0].endswith("  params.lookback=5, cost_bps=0, slippage_bps=0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_cell_ids_hash_the_resolved_configuration_only(tmp_path):
    first = load_sweep(_spec(tmp_path / "a"))
    moved = load_sweep(_spec(tmp_path / "b"))
    assert [c.id for c in first.cells] == [c.id for c in moved.cells] and len({c.id for c in first.cells}) == CELLS
    assert first.study == moved.study
    changed = load_sweep(_spec(tmp_path / "c", SPEC.replace("sig_reps = 100", "sig_reps = 100\ncapital = 50000")))
    assert not {c.id for c in changed.cells} & {c.id for c in first.cells}
    # the flag spelling and the TOML spelling of a value resolve to one cell
    spelled = load_sweep(_spec(tmp_path / "d", SPEC.replace('tickers = ["AAPL", "MSFT", "GOOG", "AMZN"]', 'tickers = "aapl,msft,goog,amzn"')))
    assert [c.id for c in spelled.cells] == [c.id for c in first.cells]


@pytest.mark.parametrize("text,message", [
    (SPEC.replace("[[zip]]\ncost_bps = [0, 5]", "[[zip]]\ncost_bps = [0, 5, 10]"), "different lengths"),
    (SPEC.replace("sig_reps = 100", "sig_reps = 100\ncolour = 1"), "unknown key 'colour'"),
    (SPEC.replace("lookback = [5, 20]", "lookbak = [5, 20]"), "cell params.lookbak=5"),
    (SPEC.replace("lookback = [5, 20]", "lookback = 5"), "expected a non-empty list"),
    (SPEC + "\n[base\n", "not valid TOML"),
    (SPEC.replace("[[zip]]\ncost_bps", "[[zip]]\nparams = {lookback = [1, 2]}\ncost_bps"), "varied twice"),
])
def test_bad_specs_get_one_line(tmp_path, text, message):
    result = CliRunner().invoke(main, ["sweep", str(_spec(tmp_path, text)), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cells_equal_the_same_backtests_run_alone(tmp_path, serial):
    spec, out, outcome = serial
    assert outcome.summary["complete"] == CELLS and outcome.skipped == 0
    for cell in outcome.sweep.cells[::3]:
        config = cell.config
        alone = backtest(
            config.strategy, list(config.tickers), out=tmp_path / cell.id, progress=False, start=config.start, sig_reps=config.sig_reps,
            cost_bps=config.cost_bps, slippage_bps=config.slippage_bps, params=config.params, study="alone",
        )
        mine = out / "cells" / cell.id
        for name in ("equity.csv", "trades.csv", "weights.csv", "decisions.jsonl"):
            assert (mine / name).read_bytes() == (alone.path / name).read_bytes(), name
        ours, theirs = (json.loads((path / "metrics.json").read_text()) for path in (mine, alone.path))
        for block in (ours["significance"], theirs["significance"]):
            for key in TRIAL_KEYS:
                block.pop(key, None)
        assert ours == theirs
        assert json.loads((mine / "run.json").read_text())["config"] == {**config.to_dict(), "study": outcome.sweep.study}


def test_results_table_ledger_and_pbo(serial):
    spec, out, outcome = serial
    table = pd.read_parquet(out / "results.parquet")
    assert len(table) == CELLS and set(table["status"]) == {"complete"}
    assert {"params.lookback", "cost_bps", "slippage_bps", "sharpe", "sharpe_low", "sharpe_high", "deflated_sharpe"} <= set(table)
    assert (table["sharpe_low"] <= table["sharpe"]).all() and (table["sharpe"] <= table["sharpe_high"]).all()
    assert set(table["trials"]) == {CELLS}
    best = table.loc[table["sharpe"].idxmax()]
    assert best["trial_rank"] == 1 and 0 <= best["deflated_sharpe"] <= 1
    recorded = trials.trials(f"name:{outcome.sweep.study}")
    assert len(recorded) == CELLS
    summary = json.loads((out / "sweep.json").read_text())
    assert 0 <= summary["pbo"]["pbo"] <= 1 and summary["pbo"]["trials"] == CELLS
    import pyarrow.parquet as pq

    assert json.loads(pq.read_schema(out / "results.parquet").metadata[b"tradesim"])["pbo"] == summary["pbo"]
    # the same command again: every cell is complete, nothing runs, the ledger does not grow
    again = run_sweep(spec, out, executor_name="serial")
    assert again.ran == [] and again.skipped == CELLS
    assert len(trials.trials(f"name:{outcome.sweep.study}")) == CELLS


def test_a_spec_with_more_cells_reuses_the_complete_ones(tmp_path, serial):
    import shutil

    spec, out, outcome = serial
    shutil.copytree(out, tmp_path / "out")
    wider = _spec(tmp_path / "wider", SPEC.replace("lookback = [5, 20]", "lookback = [5, 20, 60]"))
    extended = run_sweep(wider, tmp_path / "out", executor_name="serial")
    assert extended.skipped == CELLS and len(extended.ran) == CELLS // 2
    assert extended.sweep.study != outcome.sweep.study and len(extended.results) == CELLS * 3 // 2


def test_processes_give_byte_identical_cells(tmp_path, serial):
    spec, out, _ = serial
    run_sweep(spec, tmp_path / "process", executor_name="process", workers=2)
    assert _metrics_bytes(tmp_path / "process") == _metrics_bytes(out)
    assert not (tmp_path / "process" / ".snapshots").exists()


def test_a_worker_refuses_data_with_another_fingerprint(serial):
    spec, _, outcome = serial
    cell = outcome.sweep.cells[0]
    keys, datasets = load_datasets([cell])
    (fingerprint, data), = datasets.items()
    result = run_cell(CellTask(cell.id, cell.config, cell.config.strategy, "0" * 64, data))
    assert result.files is None and "refusing to run on different data" in result.error
    assert run_cell(CellTask(cell.id, cell.config, cell.config.strategy, fingerprint, data)).files is not None


def test_market_data_ships_without_what_was_computed_from_it():
    """After a dry pass (--prefetch) the driver's data holds cached views, one of them a read-only
    mapping that cannot be pickled: what is shipped is the data alone, and its fingerprint is
    computed again where it arrives."""
    import pickle

    from tradesim.market import load_market_data

    data = load_market_data("sample", ("MSFT", "AAPL"))
    data.ticker_codes, data.bars, data.listed
    shipped = pickle.loads(pickle.dumps(data))
    assert not {"ticker_codes", "bars", "listed", "fingerprint"} & set(shipped.__dict__)
    assert shipped.fingerprint == data.fingerprint


def _complete_cells(out: Path) -> dict[str, int]:
    cells = out / "cells"
    if not cells.exists():
        return {}
    found = {}
    for cell in cells.iterdir():
        if cell.name.startswith("."):
            continue  # a staging directory: not a cell
        names = {p.name for p in cell.iterdir()}
        assert {"run.json", "metrics.json", "equity.csv", "trades.csv", "report.html"} <= names <= RUN_FILES | {"x.parquet"}, cell
        json.loads((cell / "metrics.json").read_text())
        found[cell.name] = (cell / "run.json").stat().st_mtime_ns
    return found


def test_resume_after_sigkill_at_random_moments(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tradesim.cli", "sweep", str(spec), "--out", str(out), "--executor", "serial"]
    rng = np.random.default_rng(7)
    before: dict[str, int] = {}
    for delay in rng.uniform(2.5, 5.5, 2):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        now = _complete_cells(out)
        assert all(now[cell] == stamp for cell, stamp in before.items())  # a complete cell is never computed again
        before = now
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    after = _complete_cells(out)
    assert len(after) == CELLS and all(after[cell] == stamp for cell, stamp in before.items())
    assert f"{len(before)} complete already" in finished.stdout
    assert not [p for p in (out / "cells").iterdir() if p.name.startswith(".")]  # the killed runs' staging is gone
    assert len(pd.read_parquet(out / "results.parquet")) == CELLS


def test_data_that_cannot_be_read_is_refused_before_anything_is_written(tmp_path):
    spec = _spec(tmp_path, SPEC.replace('start = "2015-01-01"', 'start = "2015-01-01"\ndata = "no/such/prices.csv"'))
    result = CliRunner().invoke(main, ["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "serial"])
    assert result.exit_code == 1 and "no/such/prices.csv" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_occupied_directory_that_is_not_this_sweep_is_refused(tmp_path):
    spec = _spec(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(TradesimError, match="not a sweep of this spec"):
        run_sweep(spec, tmp_path / "out", executor_name="serial")
    assert list_cells(spec).count("\n") == CELLS


# ---------------------------------------------------------------------------------------- Ray
def _ray_or_skip():
    try:
        import ray  # noqa: F401
        from ray.cluster_utils import Cluster
    except ImportError:
        pytest.skip("Ray is not installed (the tradesim[ray] extra)")
    return Cluster


def test_ray_on_a_two_node_cluster_on_loopback_gives_byte_identical_cells(tmp_path, serial):
    Cluster = _ray_or_skip()
    import ray

    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    spec, out, _ = serial
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        nodes = [node for node in ray.nodes() if node["Alive"]]
        ray.shutdown()
        assert len(nodes) == 2
        assert {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}
        # the sweep joins the cluster by its address (--ray-address), runs there, and leaves it
        outcome = run_sweep(spec, tmp_path / "ray", executor_name="ray", ray_address=cluster.address)
        assert not ray.is_initialized()
        assert _metrics_bytes(tmp_path / "ray") == _metrics_bytes(out)
        assert outcome.summary["llm_cache"]["shards"]  # workers on other nodes write to shards of their own
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_local_ray_started_by_the_sweep_gives_byte_identical_cells(tmp_path, serial):
    """`ray.init(address="local", num_cpus=2, include_dashboard=False)` by the sweep itself, stopped after it."""
    _ray_or_skip()
    import ray

    spec, out, _ = serial
    assert not ray.is_initialized()
    outcome = run_sweep(spec, tmp_path / "local", executor_name="ray", workers=2)
    assert not ray.is_initialized()
    assert _metrics_bytes(tmp_path / "local") == _metrics_bytes(out)
    assert len({o.worker for o in outcome.ran}) == 2  # two worker processes shared the cells


# ------------------------------------------------------------- language models: prefetch, shards
@pytest.fixture
def llm_sweep(tmp_path, monkeypatch):
    """An LLMoE sweep with a fake router (deterministic answers, counted calls), run in this process."""
    from fakes import FakeBackend
    from helpers import synthetic_bars, write_ticker_dir
    from tradesim.llm import model as model_module

    backends = []

    def build(target, options):
        backends.append(FakeBackend(f"fake:{target}"))
        return backends[-1]

    monkeypatch.setitem(model_module.BACKENDS, "fake", build)
    frames = synthetic_bars(("MSFT",), sessions=260, seed=12, start="2015-01-01")
    bars = write_ticker_dir(tmp_path / "bars", frames)
    dates = pd.to_datetime(frames["MSFT"]["Date"])
    news = tmp_path / "news.jsonl"
    news.write_text("".join(
        json.dumps({"id": f"n{i}", "ticker": "MSFT", "created_at": f"{day.date()}T14:30:00Z", "text": f"Microsoft headline {i}"}) + "\n"
        for i, day in enumerate(dates[::3])
    ))
    spec = _spec(tmp_path / "spec", f"""
[base]
strategy = "llmoe"
tickers = "MSFT"
data = "{bars}"
news = "{news}"
train_end = "{dates[200].date()}"
sig_reps = 100
reuse_decisions = false
[base.params]
router = "fake:1"
epochs = 3
patience = 2
hidden = 8

[grid.params]
threshold = [0.5, 0.6]
""")
    return spec, backends


def _model_calls(out: Path) -> list[int]:
    return [json.loads((cell / "run.json").read_text())["llm"]["model_calls"] for cell in sorted((out / "cells").iterdir())]


def test_prefetch_leaves_no_model_call_in_the_cells(tmp_path, monkeypatch, llm_sweep):
    spec, backends = llm_sweep
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home-prefetch"))
    outcome = run_sweep(spec, tmp_path / "prefetched", executor_name="serial", prefetch_prompts=True)
    prefetched = outcome.summary["prefetch"]
    assert prefetched["prompts"] > 100 and prefetched["models"]["fake:1"]["model_calls"] == prefetched["prompts"]
    assert _model_calls(tmp_path / "prefetched") == [0, 0]
    # the same sweep without prefetch, in another home: the cells ask the model, and agree
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home-plain"))
    run_sweep(spec, tmp_path / "plain", executor_name="serial")
    assert sum(_model_calls(tmp_path / "plain")) > 100
    assert _metrics_bytes(tmp_path / "plain") == _metrics_bytes(tmp_path / "prefetched")


def test_workers_write_to_shards_that_the_driver_merges(tmp_path, monkeypatch, llm_sweep):
    from tradesim.llm.cache import DecisionCache

    spec, _ = llm_sweep
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    outcome = run_sweep(spec, tmp_path / "out", executor_name="serial", cache_shards=True)
    shards = outcome.summary["llm_cache"]
    assert shards["shards"] and shards["merged"] > 100 and shards["conflicts"] == []
    assert sum(len(o.answers) for o in outcome.ran) == shards["merged"]
    assert DecisionCache().last_row() == shards["merged"]  # the driver's cache holds what the shards answered
    # a second sweep of other cells starts its shards from that cache: its cells find every answer
    again = run_sweep(_spec(tmp_path / "other", spec.read_text().replace("[0.5, 0.6]", "[0.55]")), tmp_path / "other-out",
                      executor_name="serial", cache_shards=True)
    assert _model_calls(tmp_path / "other-out") == [0] and again.summary["llm_cache"]["merged"] == 0


def test_merging_shards_is_order_free_and_reports_a_request_answered_two_ways(tmp_path):
    from tradesim.llm.cache import DecisionCache

    def shard(name, answers):
        cache = DecisionCache(tmp_path / f"{name}.sqlite")
        cache.put_many("m", "fp", "choose", {key: {"probabilities": p, "prompt_tokens": 3, "latency_s": len(name)} for key, p in answers.items()})
        rows = cache.rows_after(0)
        cache.close()
        return rows

    one = shard("one", {"a": [0.1, 0.9], "b": [0.5, 0.5]})
    two = shard("second", {"b": [0.5, 0.5], "c": [0.3, 0.7]})  # b agrees: only its timing differs
    three = shard("third", {"a": [0.8, 0.2]})  # a answered the other way
    merged = {}
    for order in ((one, two, three), (three, two, one)):
        cache = DecisionCache(tmp_path / f"driver-{len(merged)}.sqlite")
        results = [cache.merge(rows, origin=f"w{i}") for i, rows in enumerate(order)]
        merged[len(merged)] = (sorted(r[1] for r in cache.rows_after(0)), results)
        cache.close()
    first, second = merged[0], merged[1]
    assert first[0] == second[0] == ["a", "b", "c"]
    conflicts = [c for _, found in first[1] for c in found]
    assert len(conflicts) == 1 and conflicts[0]["key"] == "a" and conflicts[0]["kept"]["probabilities"] == [0.1, 0.9]
    assert len([c for _, found in second[1] for c in found]) == 1
