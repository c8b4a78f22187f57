"""The decision cache and the LanguageModel wrapper, with a deterministic fake backend."""

import multiprocessing
import sqlite3

import numpy as np
import pytest

from tradesim.errors import TradesimError
from tradesim.llm import DecisionCache, LanguageModel, load_model
from tradesim.llm.cache import cache_key
from tradesim.llm import model as model_module
from fakes import FakeBackend


def make(tmp_path, mode="readwrite", backend=None):
    return LanguageModel(backend or FakeBackend(), DecisionCache(tmp_path / "cache.sqlite", mode), progress=False)


def test_only_misses_reach_the_model_and_a_rerun_makes_no_calls(tmp_path):
    model = make(tmp_path)
    prompts = [f"prompt {i}" for i in range(150)]
    first = model.choose(prompts[:100], ["Optimistic", "Pessimistic"])
    assert first.shape == (100, 2) and np.allclose(first.sum(axis=1), 1)
    assert model.usage.model_calls == 100 and model.usage.cache_hits == 0
    second = model.choose(prompts, ["Optimistic", "Pessimistic"])
    assert model.usage.model_calls == 150 and model.usage.cache_hits == 100
    assert sum(len(c) for c in model.backend.calls) == 150
    np.testing.assert_array_equal(second[:100], first)

    fresh = make(tmp_path)
    again = fresh.choose(prompts, ["Optimistic", "Pessimistic"])
    assert fresh.backend.calls == [] and fresh.usage.cache_hits == 150
    np.testing.assert_array_equal(again, second)
    assert fresh.describe()["model_calls"] == 0


def test_duplicate_prompts_are_computed_once(tmp_path):
    model = make(tmp_path)
    model.choose(["same"] * 5 + ["other"], ["A", "B"])
    assert sorted(sum(model.backend.calls, [])) == ["other", "same"]


def test_key_covers_fingerprint_options_and_parameters(tmp_path):
    model = make(tmp_path)
    model.choose(["p"], ["A", "B"])
    model.choose(["p"], ["B", "A"])
    model.choose(["p"], ["A", "B"], descriptions=["a thing", "b thing"])
    other = make(tmp_path, backend=FakeBackend("fake:2"))
    other.choose(["p"], ["A", "B"])
    model.generate(["p"], max_new_tokens=3)
    model.generate(["p"], max_new_tokens=4)
    assert len(model.backend.calls) == 5 and len(other.backend.calls) == 1
    assert cache_key("f", {"prompt": "p", "options": ["A", "B"]}) == cache_key("f", {"options": ["A", "B"], "prompt": "p"})


def test_readonly_mode_errors_on_a_miss_and_off_mode_stores_nothing(tmp_path):
    make(tmp_path).choose(["known"], ["A", "B"])
    readonly = make(tmp_path, "readonly")
    readonly.choose(["known"], ["A", "B"])
    with pytest.raises(TradesimError, match="readonly and 1 of 2 requests to fake:1 are not in it"):
        readonly.choose(["known", "unknown"], ["A", "B"])
    off = make(tmp_path / "off", "off")
    off.choose(["x"], ["A", "B"])
    off.choose(["x"], ["A", "B"])
    assert len(off.backend.calls) == 2 and not (tmp_path / "off" / "cache.sqlite").exists()
    with pytest.raises(TradesimError, match="does not exist, and the cache mode is readonly"):
        make(tmp_path / "none", "readonly").choose(["x"], ["A", "B"])


def test_interrupted_run_keeps_finished_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(model_module, "COMMIT_EVERY", 10)
    prompts = [f"p{i}" for i in range(50)]
    interrupted = make(tmp_path, backend=FakeBackend(fail_after=3))
    with pytest.raises(KeyboardInterrupt):
        interrupted.choose(prompts, ["A", "B"])
    resumed = make(tmp_path)
    resumed.choose(prompts, ["A", "B"])
    assert resumed.usage.cache_hits == 30 and resumed.usage.model_calls == 20


def _writer(path, worker, count):
    cache = DecisionCache(path)
    model = LanguageModel(FakeBackend(f"fake:{worker}"), cache, progress=False)
    for start in range(0, count, 10):
        model.choose([f"w{worker}-{i}" for i in range(start, start + 10)], ["A", "B"])


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    DecisionCache(path).stats()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, worker, 300)) for worker in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 600
    stats = {row["model"]: row for row in DecisionCache(path).stats()}
    assert stats["fake:0"]["entries"] == 300 and stats["fake:1"]["misses"] == 300


def test_stats_and_clear_by_model(tmp_path):
    make(tmp_path).choose(["a", "b"], ["A", "B"])
    other = make(tmp_path, backend=FakeBackend("fake:2"))
    other.choose(["a"], ["A", "B"])
    other.choose(["a"], ["A", "B"])
    cache = DecisionCache(tmp_path / "cache.sqlite")
    stats = {row["model"]: row for row in cache.stats()}
    assert stats["fake:1"]["entries"] == 2 and stats["fake:2"]["hits"] == 1
    assert cache.clear("fake:2") == 1
    assert [row["model"] for row in cache.stats()] == ["fake:1"]
    assert cache.clear() == 2 and cache.stats() == []


def test_generate_is_cached_and_unknown_specs_are_one_line(tmp_path):
    model = make(tmp_path)
    assert model.generate(["abcdef"], max_new_tokens=3) == ["fed"]
    assert model.generate(["abcdef"], max_new_tokens=3) == ["fed"]
    assert len(model.backend.calls) == 1 and model.usage.completion_tokens == 3
    with pytest.raises(TradesimError, match="expected hf:<hub id or local dir>, openai:<base url>#<model>, minilm or smollm2"):
        load_model("gpt-17", cache_path=tmp_path / "c.sqlite")
    with pytest.raises(TradesimError, match="expected openai:<base url>#<model>"):
        load_model("openai:http://localhost:8000/v1", cache_path=tmp_path / "c.sqlite")


def test_cache_commands(tmp_path):
    from click.testing import CliRunner

    from tradesim.cli import main

    make(tmp_path).choose(["a", "b"], ["A", "B"])
    path = str(tmp_path / "cache.sqlite")
    stats = CliRunner().invoke(main, ["cache", "stats", "--cache", path])
    assert stats.exit_code == 0 and "fake:1" in stats.output and "       2" in stats.output
    cleared = CliRunner().invoke(main, ["cache", "clear", "--model", "fake:1", "--cache", path])
    assert cleared.exit_code == 0 and "deleted 2 entries of fake:1" in cleared.output
    assert "(empty)" in CliRunner().invoke(main, ["cache", "stats", "--cache", path]).output
