"""A tiny copy of the ../shared/data layout FinTeamExperts reads, and a tiny random BERT, made by
the tests themselves (no shared data, no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tests.helpers import synthetic_bars

WORDS = (
    "the committee inflation rates policy federal funds rate economic growth labor market prices "
    "company revenue profit loss quarter sales net income operating margin shares market stock rose fell "
    "percent increased decreased expects risk interest members noted outlook business segment customers "
    "date open high low close adj inc context tweet on between and by its of a in to with for was were"
).split()
PLANTED_FPB = "Planted benchmark sentence says the company revenue rose sharply in the quarter"
PLANTED_OVERLAP = "Members noted that planted benchmark sentence says the company revenue rose again today"


def sentence(rng, words: int = 12) -> str:
    return " ".join(rng.choice(WORDS, words)).capitalize() + "."


def save_tiny_bert(directory: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789.,-+%:$#@'\"()!?/")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS + ["planted", "benchmark", "sentence", "says", "sharply", "again", "today", "that"])), *characters, *("##" + c for c in characters)]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(dict.fromkeys(vocab))}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=256)
    BertForMaskedLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_shared(root: Path, seed: int = 0, sentiment_labels_seed: int | None = None) -> Path:
    """corpora/, sentiment/, stocknet/ and sp500/ with a few documents each. Benchmark sentences are
    planted in the macro and micro corpora (exactly, and by an 8-gram overlap)."""
    rng = np.random.default_rng(seed)
    corpora = root / "corpora"
    (corpora / "macro" / "minutes").mkdir(parents=True)
    (corpora / "macro" / "statements").mkdir(parents=True)
    (corpora / "micro").mkdir(parents=True)
    index = []
    for i, day in enumerate(pd.date_range("2013-01-15", periods=24, freq="MS") + pd.Timedelta(days=14)):
        text = " ".join(sentence(rng) for _ in range(40))
        if i == 3:
            text += " " + PLANTED_FPB.lower() + ". " + PLANTED_OVERLAP + "."
        (corpora / "macro" / "minutes" / f"{day:%Y-%m-%d}.txt").write_text(text + "\n")
        released = day + pd.Timedelta(days=21)
        index.append({"file": f"minutes/{day:%Y-%m-%d}.txt", "meeting_start": f"{day:%Y-%m-%d}", "meeting_end": f"{day:%Y-%m-%d}", "upstream_uploaded_on": f"{released:%Y-%m-%d}", "chars": len(text), "upstream_path": "x"})
        (corpora / "macro" / "statements" / f"{day:%Y-%m-%d}.txt").write_text(" ".join(sentence(rng) for _ in range(8)) + "\n")
    pd.DataFrame(index).to_csv(corpora / "macro" / "minutes_index.csv", index=False)
    tenk = []
    for i, day in enumerate(pd.date_range("2012-03-01", periods=12, freq="QS")):
        for item in ("1", "1A", "7", "7A"):
            text = f"ITEM {item}. " + " ".join(sentence(rng) for _ in range(30))
            if i == 2 and item == "7":
                text += " " + PLANTED_FPB + "."
            tenk.append({"cik": str(100 + i), "company": f"CO {i}", "filing_date": f"{day:%Y-%m-%d}", "item": item, "text": text})
    _jsonl(corpora / "micro" / "tenk_items.jsonl", tenk)
    _jsonl(corpora / "micro" / "earnings_calls_val.jsonl", [{"ticker": "ZZZ", "quarter": 1, "year": 2020, "text": "\n".join(sentence(rng) for _ in range(20))}])
    _jsonl(corpora / "micro" / "tatqa_paragraphs.jsonl", [{"uid": "u1", "text": sentence(rng)}])
    sentiment = root / "sentiment"
    labels_rng = np.random.default_rng(seed if sentiment_labels_seed is None else sentiment_labels_seed)
    (sentiment / "fpb").mkdir(parents=True)
    fpb = [(sentence(rng, 10), ("negative", "neutral", "positive")[k % 3]) for k in range(150)]
    fpb[0] = (PLANTED_FPB + " .", "positive")
    (sentiment / "fpb" / "Sentences_50Agree.txt").write_text("\n".join(f"{t}@{label}" for t, label in fpb) + "\n")
    flare = [{"sentence": sentence(rng, 10), "label": ("negative", "neutral", "positive")[int(k)]} for k in labels_rng.integers(0, 3, 40)]
    _jsonl(sentiment / "fpb" / "flare_valid.jsonl", flare)
    (sentiment / "fiqa").mkdir()
    rows = [{"id": f"x{k}", "row": k, "split": ("train", "train", "train", "valid", "test")[k % 5], "pixiu_index": k, "label": ("negative", "neutral", "positive")[k % 3], "twin_in_other_split": 0, "text": sentence(rng, 9)} for k in range(100)]
    frame = pd.DataFrame(rows)
    test = frame["split"] == "test"
    frame.loc[test, "label"] = [("negative", "neutral", "positive")[int(k)] for k in labels_rng.integers(0, 3, int(test.sum()))]
    frame.to_csv(sentiment / "fiqa" / "finben_split.csv", index=False)
    (sentiment / "fomc" / "splits").mkdir(parents=True)
    for fomc_seed in (5768, 78516, 944601):
        for part, n in (("train", 90), ("test", 30)):
            labels = labels_rng.integers(0, 3, n) if part == "test" else rng.integers(0, 3, n)
            pd.DataFrame({"index": range(n), "sentence": [sentence(rng) for _ in range(n)], "year": 2010, "label": labels, "orig_index": range(n)}).to_csv(
                sentiment / "fomc" / "splits" / f"lab-manual-split-combine-{part}-{fomc_seed}.csv", index=False
            )
    stocknet = root / "stocknet"
    (stocknet / "price_raw").mkdir(parents=True)
    (stocknet / "tweets").mkdir()
    frames = synthetic_bars(("AAA", "BBB"), sessions=560, seed=seed, start="2013-10-01")
    for ticker, bars in frames.items():
        bars.to_csv(stocknet / "price_raw" / f"{ticker}.csv", index=False)
        days = pd.to_datetime(bars["Date"])[::3]
        _jsonl(stocknet / "tweets" / f"{ticker}.jsonl", [{"id": str(i), "created_at": f"{d:%Y-%m-%d}T15:00:00Z", "text": f"${ticker} {sentence(rng, 6)}"} for i, d in enumerate(days)])
    (root / "sp500").mkdir()
    long = []
    for ticker, bars in synthetic_bars(("CCC", "DDD"), sessions=300, seed=seed + 1, start="2013-01-02").items():
        long.append(pd.DataFrame({"ticker": ticker, "date": bars["Date"], "open": bars["Open"], "high": bars["High"], "low": bars["Low"], "close": bars["Close"], "adjusted_close": bars["Adj Close"], "volume": 1000}))
    pd.concat(long).to_csv(root / "sp500" / "sp500_top100_daily_2012_2021.csv", index=False)
    return root


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
