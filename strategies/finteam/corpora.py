"""Role corpora: which text each expert reads, cut off at a date, decontaminated.

The layout is that of `../shared/data/corpora` (see its README): `macro/minutes/*.txt` with
`macro/minutes_index.csv`, `macro/statements/*.txt`, `micro/tenk_items.jsonl`,
`micro/earnings_calls_val.jsonl`, `micro/tatqa_paragraphs.jsonl`; the quant text is generated from
price files (`tradesim.evaluation.flare`). Two experts per role, so that the gate's hard choice within a
role has something to choose.

Dates: a document is used only when it was public before the cut-off: minutes from their release
(`upstream_uploaded_on`), statements from their date, 10-K items from `filing_date`, an earnings
call of fiscal year Y from the end of March of Y+1 (the call date is not in the data), TAT-QA
paragraphs (undated; they mention years up to 2020) from 2021-01-01, price rows from their session.

Decontamination: every corpus sentence whose normalised text equals a benchmark sentence, or that
shares a word 8-gram with one, is removed; the counts are part of the build's record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from tradesim.errors import TradesimError
from tradesim.evaluation.flare import quant_documents
from tradesim.evaluation.tasks import read_fpb_lines
from tradesim.evaluation.text import ngrams, normalise, sentences

TATQA_PUBLIC = pd.Timestamp("2021-01-01")


@dataclass(frozen=True)
class ExpertSpec:
    role: str
    name: str
    sources: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.role}/{self.name}"


ROLES = ("macro", "micro", "quant")
EXPERTS = (
    ExpertSpec("macro", "minutes", ("minutes",)),
    ExpertSpec("macro", "statements", ("statements",)),
    ExpertSpec("micro", "business", ("tenk:1", "tenk:1A", "calls")),
    ExpertSpec("micro", "financials", ("tenk:7", "tenk:7A", "tatqa")),
    ExpertSpec("quant", "stocknet", ("quant:stocknet",)),
    ExpertSpec("quant", "sp500", ("quant:sp500",)),
)


@dataclass
class Decontaminator:
    """Benchmark sentences, by exact normalised text and by word 8-grams."""

    exact: dict[str, str] = field(default_factory=dict)  # normalised sentence -> benchmark name
    grams: dict[tuple[str, ...], str] = field(default_factory=dict)

    def add(self, benchmark: str, texts: Iterable[str]) -> None:
        for text in texts:
            words = normalise(str(text)).split()
            if not words:
                continue
            self.exact.setdefault(" ".join(words), benchmark)
            for gram in ngrams(words):
                self.grams.setdefault(gram, benchmark)

    def match(self, sentence: str) -> str | None:
        words = normalise(sentence).split()
        hit = self.exact.get(" ".join(words))
        if hit is not None:
            return hit
        for gram in ngrams(words):
            hit = self.grams.get(gram)
            if hit is not None:
                return hit
        return None

    def clean(self, document: str, removed: dict[str, int]) -> str:
        kept = []
        for sentence in sentences(document):
            hit = self.match(sentence)
            if hit is None:
                kept.append(sentence)
            else:
                removed[hit] = removed.get(hit, 0) + 1
        return " ".join(kept)


def benchmark_sentences(sentiment: Path) -> dict[str, list[str]]:
    """Every sentence of FPB, FiQA-SA and FOMC under `sentiment/` (all splits, all agreement levels)."""
    found: dict[str, list[str]] = {"fpb": [], "fiqa-sa": [], "fomc": []}
    fpb = sentiment / "fpb"
    for path in sorted(fpb.glob("Sentences_*.txt")):
        found["fpb"] += [text for text, _ in read_fpb_lines(path)]
    if (fpb / "flare_valid.jsonl").is_file():
        found["fpb"] += pd.read_json(fpb / "flare_valid.jsonl", lines=True)["sentence"].tolist()
    for path in sorted((sentiment / "fiqa").glob("*.csv")):
        frame = pd.read_csv(path)
        for column in ("text", "sentence"):
            if column in frame:
                found["fiqa-sa"] += frame[column].dropna().astype(str).tolist()
    for path in sorted((sentiment / "fomc").rglob("*.csv")):
        frame = pd.read_csv(path)
        if "sentence" in frame:
            found["fomc"] += frame["sentence"].dropna().astype(str).tolist()
    for name, texts in found.items():
        if not texts:
            raise TradesimError(f"{sentiment / name.replace('-sa', '')}: no {name} sentences found to decontaminate against")
    return found


@dataclass
class Document:
    source: str
    public: pd.Timestamp | None  # None: not dated (generated from dated rows already cut)
    text: str


def _jsonl(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TradesimError(f"{path}: role corpus file not found")
    return pd.read_json(path, lines=True, dtype=False)


def read_source(corpora: Path, source: str, cutoff: pd.Timestamp, prices: dict[str, Path]) -> list[Document]:
    """The documents of one source that were public strictly before `cutoff`."""
    kind, _, detail = source.partition(":")
    if kind == "minutes":
        index_path = corpora / "macro" / "minutes_index.csv"
        if not index_path.is_file():
            raise TradesimError(f"{index_path}: the minutes index (file, upstream_uploaded_on) is missing")
        index = pd.read_csv(index_path, dtype=str)
        documents = []
        for row in index.itertuples():
            released = pd.Timestamp(row.upstream_uploaded_on)
            if released < cutoff:
                documents.append(Document(source, released, (corpora / "macro" / row.file).read_text(encoding="utf-8")))
        return documents
    if kind == "statements":
        documents = []
        for path in sorted((corpora / "macro" / "statements").glob("*.txt")):
            day = pd.Timestamp(path.stem)
            if day < cutoff:
                documents.append(Document(source, day, " ".join(path.read_text(encoding="utf-8").split())))
        return documents
    if kind == "tenk":
        frame = _jsonl(corpora / "micro" / "tenk_items.jsonl")
        frame = frame[frame["item"].astype(str) == detail]
        return [
            Document(source, pd.Timestamp(day), text)
            for day, text in zip(frame["filing_date"], frame["text"])
            if pd.Timestamp(day) < cutoff
        ]
    if kind == "calls":
        frame = _jsonl(corpora / "micro" / "earnings_calls_val.jsonl")
        return [
            Document(source, pd.Timestamp(f"{int(year) + 1}-03-31"), text)
            for year, text in zip(frame["year"], frame["text"])
            if pd.Timestamp(f"{int(year) + 1}-03-31") < cutoff
        ]
    if kind == "tatqa":
        if TATQA_PUBLIC >= cutoff:
            return []
        frame = _jsonl(corpora / "micro" / "tatqa_paragraphs.jsonl")
        return [Document(source, TATQA_PUBLIC, text) for text in frame["text"]]
    if kind == "quant":
        if detail not in prices:
            raise TradesimError(f"quant corpus {detail}: no price source given")
        return [Document(source, None, text) for text in quant_documents(prices[detail], cutoff)]
    raise ValueError(f"unknown corpus source {source!r}")


@dataclass
class ExpertCorpus:
    spec: ExpertSpec
    train: list[str]
    held_out: list[str]
    record: dict


def expert_corpora(
    corpora: Path, sentiment: Path, prices: dict[str, Path], cutoff: pd.Timestamp, experts=EXPERTS, held_out_share: float = 0.05
) -> list[ExpertCorpus]:
    """Each expert's documents, decontaminated, split into training and held-out text (every
    twentieth document, in date order, is held out)."""
    cleaner = Decontaminator()
    for name, texts in benchmark_sentences(sentiment).items():
        cleaner.add(name, texts)
    result = []
    every = max(2, round(1 / held_out_share))
    for spec in experts:
        documents: list[Document] = []
        for source in spec.sources:
            documents += read_source(corpora, source, cutoff, prices)
        removed: dict[str, int] = {}
        texts = [cleaner.clean(d.text, removed) for d in documents]
        texts = [t for t in texts if t]
        if len(texts) < 2:
            raise TradesimError(f"expert {spec.key}: fewer than two documents public before {cutoff.date()} in {corpora}")
        held = texts[every - 1 :: every] or texts[-1:]
        train = [t for i, t in enumerate(texts) if (i + 1) % every != 0] if len(texts) >= every else texts[:-1]
        dates = [d.public for d in documents if d.public is not None]
        record = {
            "documents": len(texts),
            "characters": sum(map(len, texts)),
            "held_out_documents": len(held),
            "removed_sentences": dict(sorted(removed.items())),
            "latest_public": str(max(dates).date()) if dates else None,
        }
        result.append(ExpertCorpus(spec, train, held, record))
    return result
