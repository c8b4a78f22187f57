"""Router scoring throughput: naive generation vs batched scoring vs prefix reuse vs the cache.

The same randomly initialised model (CPU: Qwen2.5-0.5B-shaped; `--device cuda`: Llama-3-8B-shaped
in bf16) answers a few hundred router-like prompts that share a long instruction prefix:

  1. naive      generate() a few tokens one prompt at a time and parse the label
  2. batched    HFBackend.choose: one forward pass per batch, last-position logits only
  3. prefix     the same, with the shared instruction prefix's KV cache reused
  4. cached     a second pass through LanguageModel, served by the decision cache

Prints prompts/s and the ratios. Targets on a 2-core CPU: (2) >= 3x (1); (3) >= 1.5x (2) when
>= 60% of each prompt is shared prefix; (4) >= 50x (2). On CUDA it also prints achieved TFLOP/s.

    python benchmarks/llm_scoring.py [--prompts N] [--device cpu|cuda] [--shape qwen0.5b|llama8b|tiny]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llm_helpers import build_tokenizer  # noqa: E402  (tiny tokenizer trained in-process, no download)

SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=1000),
    "qwen0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936),
    "llama8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
}
INSTRUCTIONS = (
    "You are the router of a mixture of trading experts. Below are the last five trading sessions of one "
    "stock: one line per session with open, high, low, close and volume, followed by the headlines "
    "published that day, or 'no news'. Judge whether the outlook for the next session is Optimistic or "
    "Pessimistic. Consider momentum, volatility, the strength of the news and how the market reacted. "
    "Weigh a strong close on high volume above a quiet drift, treat repeated headlines as one, and ignore "
    "headlines about other companies. Do not explain. "
    "Answer with exactly one word: Optimistic or Pessimistic.\n"
)


def router_prompts(count: int) -> list[str]:
    prompts = []
    for i in range(count):
        lines = [
            f"d-{5 - d}: open {100 + i % 17 + d:.2f} high {102 + i % 13 + d:.2f} low {98 + i % 11:.2f} "
            f"close {101 + (i * 7 + d) % 19:.2f} volume {1000 + i * 31 + d * 7}; "
            + ("no news" if (i + d) % 3 else "Microsoft beats estimates")
            for d in range(5)
        ]
        prompts.append(INSTRUCTIONS + "\n".join(lines) + "\nAnswer:")
    return prompts


def build_model(directory: Path, shape: str, dtype) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(chat=False)
    config = LlamaConfig(
        **SHAPES[shape],
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=shape == "qwen0.5b",
    )
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def naive(backend, prompts: list[str]) -> list[str]:
    torch = backend._torch
    labels = []
    for prompt in prompts:
        encoded = backend.tokenizer(prompt, return_tensors="pt").to(backend.device)
        with torch.inference_mode():
            output = backend.model.generate(**encoded, max_new_tokens=3, do_sample=False, pad_token_id=backend.tokenizer.pad_token_id)
        text = backend.tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True).strip().lower()
        labels.append("Optimistic" if text.startswith("opt") else "Pessimistic")
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=None, help="default 256 on CUDA, 48 on CPU (about 4 minutes)")
    parser.add_argument("--naive-prompts", type=int, default=None, help="prompts for the naive pass (default: a third)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import torch

    from tradesim.llm import DecisionCache, LanguageModel
    from tradesim.llm.hf import HFBackend

    cuda = args.device.startswith("cuda")
    shape = args.shape or ("llama8b" if cuda else "qwen0.5b")
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.set_num_threads(torch.get_num_threads())
    prompts = router_prompts(args.prompts or (256 if cuda else 48))
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch) / "model"
        build_model(directory, shape, dtype)
        options = dict(device=args.device, dtype="bfloat16" if cuda else "float32", batch_size=args.batch_size)
        plain = HFBackend(str(directory), prefix_reuse=False, **options)
        reuse = HFBackend(str(directory), prefix_reuse=True, **options)
        token_counts = [len(plain.encode(p)) for p in prompts]
        prefix = len(reuse.shared_prefix([plain.encode(p) for p in prompts], keep=1))
        mean_tokens = sum(token_counts) / len(token_counts)
        print(f"model: {shape}-shaped Llama, random weights, {sum(p.numel() for p in plain.model.parameters()) / 1e6:.0f}M parameters, {plain.device} {plain.torch_dtype}")
        print(f"prompts: {len(prompts)}, {mean_tokens:.0f} tokens each on average, shared prefix {prefix} tokens ({prefix / mean_tokens:.0%})")

        plain.choose_batch(prompts[:4], ["Optimistic", "Pessimistic"], None)  # warm-up
        naive_prompts = prompts[: args.naive_prompts or max(1, len(prompts) // 3)]
        naive_s, _ = timed(lambda: naive(plain, naive_prompts))
        batched_s, _ = timed(lambda: plain.choose_batch(prompts, ["Optimistic", "Pessimistic"], None))
        reuse_s, _ = timed(lambda: reuse.choose_batch(prompts, ["Optimistic", "Pessimistic"], None))
        cached = LanguageModel(reuse, DecisionCache(Path(scratch) / "cache.sqlite"), progress=False)
        cached.choose(prompts, ["Optimistic", "Pessimistic"])
        cache_s, _ = timed(lambda: cached.choose(prompts, ["Optimistic", "Pessimistic"]))

    rates = {
        "1 naive generate": len(naive_prompts) / naive_s,
        "2 batched scoring": len(prompts) / batched_s,
        "3 scoring + prefix reuse": len(prompts) / reuse_s,
        "4 second pass, cache": len(prompts) / cache_s,
    }
    for name, rate in rates.items():
        print(f"{name:<26} {rate:12.1f} prompts/s")
    values = list(rates.values())
    print(f"(2)/(1) = {values[1] / values[0]:.1f}x (target >= 3)")
    print(f"(3)/(2) = {values[2] / values[1]:.1f}x (target >= 1.5 with >= 60% shared prefix)")
    print(f"(4)/(2) = {values[3] / values[1]:.0f}x (target >= 50)")
    if cuda:
        config = plain.model.config
        per_token = 2 * (sum(p.numel() for p in plain.model.parameters()) - config.vocab_size * config.hidden_size)
        attention = 2 * config.num_hidden_layers * config.hidden_size * mean_tokens  # QK^T and AV, averaged
        flops = len(prompts) * mean_tokens * (per_token + attention)
        print(f"batched scoring: {flops / batched_s / 1e12:.0f} TFLOP/s achieved (prefill-only, no prefix reuse)")


if __name__ == "__main__":
    main()
