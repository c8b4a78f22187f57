"""TradExpert's General Expert: what turns the experts' reports into comparisons (rank mode) or
rise probabilities (predict mode). `fitted`: a feed-forward network trained on the training period
over the Market and Alpha numbers and principal components of the encoder's embeddings of the
News and Fundamental reports; `random`: the chance baseline (seeded, reproducible); any model spec:
zero-shot over the prompts' options, optionally LoRA-tuned first (`--fine-tune lora`).

`GeneralExpert` is a part of the TradExpert strategy class: it reads the strategy's `settings`,
`seed`, `horizon`, `experts`, `factors`, `runtime` and `model()`, and keeps what it fits
(`projections`, `input_columns`, `general`) on the strategy, which stores them for paper accounts.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from strategies.tradexpert.experts import Facts
from strategies.tradexpert.prompts import PREDICT_DESCRIPTIONS, PREDICT_OPTIONS, RANK_DESCRIPTIONS, RANK_OPTIONS, pair_prompt, single_prompt
from tradesim.llm.lora import LoraSettings, fine_tune
from tradesim.market.data import MarketView
from tradesim.ranking import both_orders

EMBEDDED_EXPERTS = ("news", "fundamental")  # texts the fitted General Expert reads through the encoder
EMBEDDING_COMPONENTS = 8  # principal components kept of each embedded report


class GeneralExpert:
    """The General Expert's methods of the TradExpert strategy."""

    @property
    def device(self):
        import torch

        from tradesim.models.training import default_device

        return default_device() if self.runtime.device == "auto" else torch.device(self.runtime.device)

    # ---------------------------------------------------------------- features for the fitted General Expert
    def embedded(self, gathered: list[Facts], experts: tuple[str, ...] = EMBEDDED_EXPERTS) -> dict[str, np.ndarray]:
        """Per embedded expert: one embedding per (date, ticker) in `gathered` order (unique texts once;
        kept on each Facts, so the trained News Analyst and the General Expert ask the encoder once)."""
        result = {}
        for expert in experts:
            if expert not in self.experts:
                continue
            pending = [facts for facts in gathered if expert not in facts.vectors]
            texts = [facts.texts[t][expert] for facts in pending for t in facts.tickers]
            unique = list(dict.fromkeys(texts))
            vectors = self.model(self.settings.encoder).embed(unique) if unique else np.empty((0, 0))
            lookup = {text: row for row, text in enumerate(unique)}
            for facts in pending:
                facts.vectors[expert] = vectors[[lookup[facts.texts[t][expert]] for t in facts.tickers]]
            parts = [facts.vectors[expert] for facts in gathered if facts.tickers]
            result[expert] = np.vstack(parts) if parts else np.empty((0, 0))
        return result

    def features(self, gathered: list[Facts]) -> list[pd.DataFrame]:
        """Per date: tickers x (Market and Alpha numbers, principal components of report embeddings)."""
        numbers = [facts.numbers for facts in gathered]
        embedded = self.embedded(gathered)
        frames = []
        start = 0
        for facts, table in zip(gathered, numbers):
            stop = start + len(facts.tickers)
            parts = [table.to_numpy(dtype=float)]
            for expert, vectors in embedded.items():
                mean, components = self.projections[expert]
                parts.append((vectors[start:stop] - mean) @ components.T)
            start = stop
            columns = [*table.columns, *(f"{e}_pc{i}" for e in embedded for i in range(self.projections[e][1].shape[0]))]
            frames.append(pd.DataFrame(np.hstack(parts) if parts else np.empty((len(facts.tickers), 0)), index=facts.tickers, columns=columns))
        return frames

    def fit_projections(self, gathered: list[Facts]) -> None:
        """Principal components of each embedded expert's training reports (numpy SVD)."""
        self.projections = {}
        for expert, vectors in self.embedded(gathered).items():
            mean = vectors.mean(axis=0)
            _, _, basis = np.linalg.svd(vectors - mean, full_matrices=False)
            self.projections[expert] = (mean, basis[:EMBEDDING_COMPONENTS])

    def fine_tune(self, view: MarketView, forward: pd.DataFrame, dates) -> None:
        """LoRA-fit the General Expert's model to answer the training prompts with their realized labels
        (A when stock A returned more over the horizon; Rise when the return was positive)."""
        settings = self.settings
        rng = np.random.default_rng(self.seed)
        examples: list[tuple[Facts, tuple[str, ...], int]] = []
        for facts in self.facts([view.at(date) for date in dates]):
            realized = forward.loc[facts.date]
            known = [t for t in facts.tickers if np.isfinite(realized[t])]
            if settings.mode == "rank":
                for i, a in enumerate(known):
                    for b in known[i + 1 :]:
                        if realized[a] != realized[b]:
                            winner = int(realized[a] < realized[b])  # 0: A did better
                            examples += [(facts, (a, b), winner), (facts, (b, a), 1 - winner)]
            else:
                examples += [(facts, (t,), int(realized[t] <= 0)) for t in known]
        if len(examples) > settings.lora_examples:
            examples = [examples[i] for i in sorted(rng.choice(len(examples), settings.lora_examples, replace=False))]
        prompts = [pair_prompt(facts, *names, self.horizon) if len(names) == 2 else single_prompt(facts, names[0], self.horizon) for facts, names, _ in examples]
        options = RANK_OPTIONS if settings.mode == "rank" else PREDICT_OPTIONS
        lora = LoraSettings(rank=settings.lora_rank, alpha=2 * settings.lora_rank, epochs=settings.lora_epochs, seed=self.seed)
        self.fitted.append(fine_tune(self.model(settings.general_expert), prompts, [label for *_, label in examples], options, lora))

    def pair_rows(self, features: list[pd.DataFrame], forward: pd.DataFrame, dates) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of tickers on each training date, in both orders: [a - b, a, b] -> 1 when a returned more."""
        rng = np.random.default_rng(self.seed)
        per_date = max(1, self.settings.max_pairs // max(1, len(dates)) // 2)
        rows, labels = [], []
        for date, table in zip(dates, features):
            realized = forward.loc[date].reindex(table.index).to_numpy(dtype=float)
            known = np.flatnonzero(np.isfinite(realized))
            values, outcome = table.to_numpy(dtype=float)[known], realized[known]
            first, second = np.triu_indices(len(known), 1)
            differ = outcome[first] != outcome[second]
            first, second = first[differ], second[differ]
            if len(first) > per_date:
                chosen = np.sort(rng.choice(len(first), per_date, replace=False))
                first, second = first[chosen], second[chosen]
            a = np.concatenate([first, second])  # both orders of every pair
            b = np.concatenate([second, first])
            rows.append(self.pair_input(values[a], values[b]))
            labels.append((outcome[a] > outcome[b]).astype(float))
        return np.vstack(rows), np.concatenate(labels)

    @staticmethod
    def pair_input(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a - b, a, b], axis=-1)

    def single_rows(self, features: list[pd.DataFrame], forward: pd.DataFrame, dates) -> tuple[np.ndarray, np.ndarray]:
        rows, labels = [], []
        for date, table in zip(dates, features):
            realized = forward.loc[date].reindex(table.index)
            known = realized.notna().to_numpy()
            rows.append(table.to_numpy()[known])
            labels.append((realized.to_numpy()[known] > 0).astype(float))
        return np.vstack(rows), np.concatenate(labels)

    def network(self):
        from tradesim.models.networks import FeedForward

        return FeedForward(self.input_columns, self.settings.hidden)

    def train(self, rows: np.ndarray, labels: np.ndarray):
        from tradesim.models.training import fit_or_load

        settings = self.settings
        classifier = fit_or_load(
            self.network,
            rows,
            labels,
            architecture=f"{type(self).__module__}.{type(self).__name__}.network",
            seed=self.seed,
            epochs=settings.epochs,
            patience=settings.patience,
            device=self.device,
            batch_size=512,
            about={
                "strategy": self.name,
                "role": f"general expert ({settings.mode})",
                "experts": list(self.experts),
                "factors": self.factors,
                "encoder": self.models_used[settings.encoder].fingerprint if settings.encoder in self.models_used else None,
                "training_period": self.training_period,
                "fill": self.runtime.fill,
                "horizon": self.horizon,
                "hidden": settings.hidden,
                "tickers": list(self.tickers),
            },
        )
        self.fitted.append(classifier.record)
        return classifier

    # ---------------------------------------------------------------- the General Expert
    def comparator(self, facts: Facts, table: pd.DataFrame | None):
        """P(a returns more than b) for a batch of pairs, asked in both orders."""
        general = self.settings.general_expert
        if general == "random":
            def compare(pairs):
                return [_seeded_uniform(self.seed, facts.date, a, b) for a, b in pairs]
            return both_orders(compare)
        if general == "fitted":
            def compare(pairs):
                a = table.loc[[p[0] for p in pairs]].to_numpy()
                b = table.loc[[p[1] for p in pairs]].to_numpy()
                return self.general.predict(self.pair_input(a, b))
            return both_orders(compare)
        model = self.model(general)

        def compare(pairs):
            return model.choose([pair_prompt(facts, a, b, self.horizon) for a, b in pairs], RANK_OPTIONS, RANK_DESCRIPTIONS)[:, 0]
        return both_orders(compare)

    def rise_probabilities(self, facts: Facts, table: pd.DataFrame | None) -> np.ndarray:
        general = self.settings.general_expert
        if general == "random":
            return np.array([_seeded_uniform(self.seed, facts.date, t, "") for t in facts.tickers])
        if general == "fitted":
            return self.general.predict(table.loc[facts.tickers].to_numpy())
        model = self.model(general)
        return model.choose([single_prompt(facts, t, self.horizon) for t in facts.tickers], PREDICT_OPTIONS, PREDICT_DESCRIPTIONS)[:, 0]


def _seeded_uniform(seed: int, date: pd.Timestamp, a: str, b: str) -> float:
    digest = hashlib.sha256(f"{seed}|{date.date()}|{a}|{b}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64
