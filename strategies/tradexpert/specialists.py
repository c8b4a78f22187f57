"""TradExpert's trained specialists, as the paper builds them: each expert a model fitted on the
training period whose prediction goes into its report.

* Market (`--market-expert reprogrammed`): Time-LLM reprogramming (`tradesim.models.reprogramming`)
  of the last `--reprogram-window` sessions of OHLCV into a frozen local language model
  (`--market-llm`), after a prefix with the window's statistics; P(rise over the horizon).
* Alpha (`--alpha-expert lightgbm`): LightGBM over every factor of `tradesim.market.factors`;
  P(the ticker beats the day's median over the horizon) (P(rise) with fewer than three tickers),
  and the factors that contributed most to it (`pred_contrib`) with their values and meanings.
* News (`--news-expert trained`): a classifier over the `--encoder` embedding of the News report;
  P(rise over the horizon).
* Fundamental (`--fundamental-expert trained`): a classifier over the latest published
  fundamentals (each field's change on the previous period, its age); five classes of the
  quarter-ahead (63-session) return: strong fall, moderate fall, no change, moderate rise, strong
  rise, cut at the quintiles of the training labels.

When any specialist is trained, the labelled training dates are split in time: the specialists fit
on the first `SPECIALIST_SHARE` of them, the fitted General Expert on the rest, where the
specialists' predictions are out of sample (stacking), with one horizon between the two.
`Specialists` is a part of the TradExpert strategy class, like `GeneralExpert`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from strategies.tradexpert.experts import Facts, panel
from tradesim.errors import TradesimError
from tradesim.market.data import MarketView
from tradesim.market.factors import FACTOR_HISTORY, FACTORS, compute_factors
from tradesim.market.features import fill_to_fill_returns

TRAINED = {"market": "reprogrammed", "alpha": "lightgbm", "news": "trained", "fundamental": "trained"}
SPECIALIST_SHARE = 0.7
CHANNELS = ("open", "high", "low", "close", "volume")
QUARTER = 63  # sessions: the Fundamental Analyst's horizon
CLASSES = ("strong fall", "moderate fall", "no change", "moderate rise", "strong rise")
FUNDAMENTAL_FIELDS = 12  # the most frequent fields of the training period the classifier reads
TOP_LAGS = 5


# ---------------------------------------------------------------- Market: windows and their prefixes
def windows_at(bars: dict[str, pd.DataFrame], end: int, tickers: list[str], window: int) -> tuple[np.ndarray, list[str]]:
    """tickers x channels x window ending at session position `end` (inclusive); the tickers whose
    window is complete (a source without volume reads zeros)."""
    start = end - window + 1
    if start < 0:
        return np.empty((0, len(CHANNELS), window)), []
    stacked = np.stack([bars[name][tickers].to_numpy(dtype=float)[start : end + 1].T for name in CHANNELS], axis=1)
    stacked[:, 4] = np.log1p(np.nan_to_num(stacked[:, 4], nan=0.0))
    complete = np.isfinite(stacked).all(axis=(1, 2))
    return stacked[complete], [t for t, ok in zip(tickers, complete) if ok]


def top_lags(returns: np.ndarray, count: int = TOP_LAGS) -> list[int]:
    """Time-LLM's lags: the largest values of the (FFT) autocorrelation, lag 0 left out."""
    centred = returns - returns.mean()
    spectrum = np.fft.rfft(centred, n=2 * len(centred))
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[1 : len(centred) // 2 + 1]
    return [int(i) + 1 for i in np.argsort(-correlation, kind="stable")[:count]]


def window_prompt(close: np.ndarray, horizon: int) -> str:
    """The prefix of one window (Time-LLM's input statistics), from ratios of its closes only, so a
    later restatement of adjusted prices changes nothing."""
    returns = close[1:] / close[:-1] - 1
    return (
        f"Task: predict whether the stock rises over the next {horizon} sessions from its last {len(close)} sessions of "
        f"open, high, low, close and volume. Input statistics: min daily return {returns.min():+.2%}, max {returns.max():+.2%}, "
        f"median {np.median(returns):+.2%}, the trend of input is {'upward' if close[-1] >= close[0] else 'downward'}, "
        f"top {TOP_LAGS} lags are {top_lags(returns)}."
    )


@dataclass
class Training:
    """What the specialists fit on: the training view, its bars (for labels), the H-session returns,
    the specialists' training dates with their facts, and every factor's history (None without Alpha)."""

    view: MarketView
    bars: dict[str, pd.DataFrame]
    forward: pd.DataFrame
    dates: pd.DatetimeIndex
    gathered: list[Facts]
    factors: dict[str, pd.DataFrame] | None

    def labelled(self) -> list[tuple[int, int, str, float]]:
        """(row in the facts' (date, ticker) order, date position, ticker, realized return) of every
        judged ticker whose H-session return is known."""
        keys, row = [], 0
        for i, (date, facts) in enumerate(zip(self.dates, self.gathered)):
            realized = self.forward.loc[date]
            for ticker in facts.tickers:
                if np.isfinite(realized.get(ticker, np.nan)):
                    keys.append((row, i, ticker, float(realized[ticker])))
                row += 1
        return keys


class Specialists:
    """The trained specialists' methods of the TradExpert strategy."""

    def trained_experts(self) -> tuple[str, ...]:
        return tuple(e for e in self.experts if getattr(self.settings, f"{e}_expert") != "facts")

    # ---------------------------------------------------------------- fitting
    def fit_specialists(self, training: Training) -> None:
        """Fit every trained specialist on the training dates given."""
        self.specialists = {expert: getattr(self, f"fit_{expert}_specialist")(training) for expert in self.trained_experts()}

    def fit_market_specialist(self, training: Training) -> dict[str, Any]:
        from tradesim.models.reprogramming import fit_or_load_reprogrammed

        settings = self.settings
        positions = training.view.sessions.get_indexer(training.dates)
        filled = panel(training.view, None)  # as decisions see them: one missing bar carried over
        keys = training.labelled()
        rng = np.random.default_rng(self.seed)
        if len(keys) > settings.specialist_samples:
            keys = [keys[i] for i in sorted(rng.choice(len(keys), settings.specialist_samples, replace=False))]
        windows, prompts, labels = [], [], []
        for _, i, ticker, realized in keys:
            found, kept = windows_at(filled, positions[i], [ticker], settings.reprogram_window)
            if kept:
                windows.append(found[0])
                prompts.append(window_prompt(found[0][3], self.horizon))
                labels.append(float(realized > 0))
        if len(windows) < 20:
            raise TradesimError(f"--market-expert reprogrammed: only {len(windows)} complete {settings.reprogram_window}-session windows to train on")
        model = fit_or_load_reprogrammed(
            self.market_llm(), np.stack(windows), prompts, np.asarray(labels), self.reprogramming_settings(),
            about={"strategy": self.name, "role": "market analyst (reprogrammed)", "horizon": self.horizon, "fill": self.runtime.fill,
                   "training_period": self.training_period},
        )
        self._reprogrammed = model
        self.fitted.append({"role": "market analyst (reprogrammed)", **model.record})
        return {"kind": "reprogrammed", "id": model.record["id"], "window": settings.reprogram_window}

    def market_llm(self):
        """The frozen model the reprogrammed Market Analyst reads through (a failure to load names the flag)."""
        try:
            return self.model(self.settings.market_llm)
        except TradesimError as error:
            raise TradesimError(f"--market-llm {self.settings.market_llm}: {error}") from None

    def reprogramming_settings(self):
        from tradesim.models.reprogramming import ReprogrammingSettings

        s = self.settings
        return ReprogrammingSettings(layers=s.reprogram_layers, prototypes=s.prototypes, epochs=s.reprogram_epochs, seed=self.seed)

    def reprogrammed(self):
        """The trained reprogramming layer over its frozen model (loaded from its store after a restore)."""
        if getattr(self, "_reprogrammed", None) is None:
            from tradesim.models.reprogramming import load_reprogrammed

            record = self.specialists["market"]
            self._reprogrammed = load_reprogrammed(
                self.market_llm(), record["id"], len(CHANNELS), record["window"], self.reprogramming_settings()
            )
        return self._reprogrammed

    def fit_alpha_specialist(self, training: Training) -> dict[str, Any]:
        from tradesim.models.boosting import fit_or_load_booster

        names = list(FACTORS)
        relative = len(self.tickers) >= 3
        rows, labels = [], []
        for i, keys in itertools.groupby(training.labelled(), key=lambda key: key[1]):  # one date at a time
            _, _, tickers, realized = zip(*keys)
            date, realized = training.dates[i], np.array(realized)
            rows.append(np.column_stack([training.factors[name].loc[date, list(tickers)].to_numpy(dtype=float) for name in names]))
            labels.append(realized > np.median(realized) if relative else realized > 0)
        booster = fit_or_load_booster(
            np.vstack(rows), np.concatenate(labels).astype(float), names, seed=self.seed, rounds=self.settings.lightgbm_rounds,
            about={"strategy": self.name, "role": "alpha expert (lightgbm)", "horizon": self.horizon, "fill": self.runtime.fill,
                   "relative": relative, "training_period": self.training_period},
            flag="--alpha-expert lightgbm",
        )
        self.fitted.append({"role": "alpha expert (lightgbm)", **booster.record})
        return {"kind": "lightgbm", "booster": booster, "relative": relative}

    def fit_news_specialist(self, training: Training) -> dict[str, Any]:
        keys = training.labelled()
        rows = self.embedded(training.gathered, ("news",))["news"][[row for row, *_ in keys]]
        labels = np.array([realized > 0 for *_, realized in keys], dtype=float)
        classifier = self.fit_small(rows, labels, "news analyst (trained)", classes=2)
        return {"kind": "trained", "classifier": classifier}

    def fit_fundamental_specialist(self, training: Training) -> dict[str, Any]:
        quarter = fill_to_fill_returns(training.bars, self.runtime.fill, QUARTER)
        published = [training.view.at(date).fundamentals() for date in training.dates]
        counts = pd.concat(published)["field"].value_counts() if any(len(p) for p in published) else pd.Series(dtype=int)
        if counts.empty:
            raise TradesimError("--fundamental-expert trained: no fundamentals were published before --train-end (give --fundamentals FILE)")
        fields = sorted(counts.index[:FUNDAMENTAL_FIELDS].tolist(), key=lambda f: (-counts[f], f))
        rows, realized = [], []
        for date, facts, table in zip(training.dates, training.gathered, published):
            features = fundamental_features(table, facts.tickers, fields, date)
            outcome = quarter.loc[date].reindex(facts.tickers).to_numpy(dtype=float)
            known = np.isfinite(outcome)
            rows.append(features[known])
            realized.append(outcome[known])
        rows, realized = np.vstack(rows), np.concatenate(realized)
        if len(realized) < 50:
            raise TradesimError(f"--fundamental-expert trained: only {len(realized)} training rows with a known {QUARTER}-session return before --train-end")
        cuts = np.quantile(realized, [0.2, 0.4, 0.6, 0.8])
        classifier = self.fit_small(rows, np.searchsorted(cuts, realized, side="right"), "fundamental analyst (trained)", classes=len(CLASSES),
                                    extra={"fields": fields, "cuts": cuts.tolist()})
        return {"kind": "trained", "classifier": classifier, "fields": fields, "cuts": cuts.tolist()}

    def fit_small(self, rows: np.ndarray, labels: np.ndarray, role: str, classes: int, extra: dict | None = None):
        from tradesim.models.training import fit_or_load

        settings = self.settings
        started = time.perf_counter()
        classifier = fit_or_load(
            lambda: self.small_network(rows.shape[1], classes), rows, labels,
            architecture=f"{type(self).__module__}.{type(self).__name__}.small_network",
            seed=self.seed, epochs=settings.epochs, patience=settings.patience, device=self.device, batch_size=256, classes=classes,
            about={"strategy": self.name, "role": role, "horizon": QUARTER if classes > 2 else self.horizon, "fill": self.runtime.fill,
                   "hidden": settings.hidden, "training_period": self.training_period, **(extra or {})},
        )
        self.fitted.append({"role": role, **classifier.record, "rows": int(len(rows)), "seconds": round(time.perf_counter() - started, 2)})
        return classifier

    def small_network(self, inputs: int, classes: int):
        from tradesim.models.networks import FeedForward

        return FeedForward(inputs, self.settings.hidden, outputs=1 if classes == 2 else classes)

    # ---------------------------------------------------------------- predicting
    def apply_specialists(self, views: list[MarketView], gathered: list[Facts]) -> None:
        """Each trained specialist's prediction for every judged ticker: a column of the numbers the
        fitted General Expert reads, a sentence of the report, a row of the `specialists` table."""
        for expert in self.trained_experts():
            predict = getattr(self, f"predict_{expert}")
            for facts, (values, sentences, details) in zip(gathered, predict(views, gathered)):
                facts.numbers[f"{expert}_prediction"] = values
                for ticker, sentence, detail, value in zip(facts.tickers, sentences, details, values):
                    facts.said.setdefault(ticker, {})[expert] = sentence
                    facts.predictions.setdefault(ticker, {})[expert] = {"prediction": float(value), **detail}

    def predict_market(self, views, gathered):
        settings = self.settings
        model = self.reprogrammed()
        for view, facts in zip(views, gathered):
            # one date's windows batched together and with nothing else, so that a prediction depends on
            # its date's data only (padding and batch shapes move the last bits of a float)
            bars = panel(view, settings.reprogram_window)
            windows, kept = windows_at(bars, len(bars["close"]) - 1, facts.tickers, settings.reprogram_window)
            found = dict(zip(kept, model.predict(windows, [window_prompt(w[3], self.horizon) for w in windows])))
            values = [found.get(t, np.nan) for t in facts.tickers]
            sentences = [
                f"Reprogrammed Market Analyst: P(rise over the next {self.horizon} sessions) = {p:.3f}." if np.isfinite(p)
                else f"Reprogrammed Market Analyst: fewer than {settings.reprogram_window} complete sessions, no prediction (0.5)."
                for p in values
            ]
            yield np.nan_to_num(np.array(values, dtype=float), nan=0.5), sentences, [{} for _ in values]

    def predict_alpha(self, views, gathered):
        record = self.specialists["alpha"]
        booster = record["booster"]
        what = f"P(beats the day's median ticker over the next {self.horizon} sessions)" if record["relative"] else f"P(rise over the next {self.horizon} sessions)"
        for view, facts in zip(views, gathered):
            if not facts.tickers:
                yield np.empty(0), [], []
                continue
            factors = compute_factors(panel(view, FACTOR_HISTORY))
            rows = np.column_stack([factors[name].iloc[-1].reindex(facts.tickers).to_numpy(dtype=float) for name in booster.features])
            scores = booster.predict(rows)
            contributions = booster.contributions(rows)
            sentences, details = [], []
            for row, score, contribution in zip(rows, scores, contributions):
                top = np.argsort(-np.abs(contribution), kind="stable")[: self.settings.alpha_factors]
                parts = [f"{booster.features[j]} = {row[j]:.4g} ({contribution[j]:+.3f}: {FACTORS[booster.features[j]][0]})" for j in top]
                sentences.append(f"LightGBM Alpha score: {what} = {score:.3f}; the factors that moved it most (contribution in log-odds): " + "; ".join(parts) + ".")
                details.append({"top_factors": {booster.features[j]: round(float(contribution[j]), 6) for j in top}})
            yield scores, sentences, details

    def predict_news(self, views, gathered):
        classifier = self.specialists["news"]["classifier"]
        vectors = self.embedded(gathered, ("news",))["news"]
        start = 0
        for facts in gathered:
            stop = start + len(facts.tickers)
            values = classifier.predict(vectors[start:stop]) if stop > start else np.empty(0)
            start = stop
            yield values, [f"Trained News Analyst: P(rise over the next {self.horizon} sessions) = {p:.3f}." for p in values], [{} for _ in values]

    def predict_fundamental(self, views, gathered):
        record = self.specialists["fundamental"]
        for view, facts in zip(views, gathered):
            if not facts.tickers:
                yield np.empty(0), [], []
                continue
            probabilities = record["classifier"].predict(fundamental_features(view.fundamentals(), facts.tickers, record["fields"], view.date))
            expected = probabilities @ np.arange(-2, 3, dtype=float)  # -2 strong fall .. +2 strong rise
            sentences, details = [], []
            for p in probabilities:
                likeliest = CLASSES[int(np.argmax(p))]
                shares = ", ".join(f"{name} {share:.2f}" for name, share in zip(CLASSES[::-1], p[::-1]))
                sentences.append(f"Trained Fundamental Analyst, next {QUARTER} sessions: {shares}; likeliest {likeliest}.")
                details.append({"classes": [round(float(x), 6) for x in p], "likeliest": likeliest})
            yield expected, sentences, details


def fundamental_features(table: pd.DataFrame, tickers: list[str], fields: list[str], date: pd.Timestamp) -> np.ndarray:
    """tickers x (per field: change on the previous period, known?, years since its period ended)."""
    out = np.zeros((len(tickers), 3 * len(fields)))
    if table.empty:
        return out
    position = {t: i for i, t in enumerate(tickers)}
    column = {f: j for j, f in enumerate(fields)}
    for row in table.itertuples():
        i, j = position.get(row.ticker), column.get(row.field)
        if i is None or j is None:
            continue
        change = row.value / row.previous_value - 1 if np.isfinite(row.previous_value) and row.previous_value != 0 else 0.0
        out[i, 3 * j] = float(np.clip(change, -1.0, 1.0))
        out[i, 3 * j + 1] = 1.0
        out[i, 3 * j + 2] = (pd.Timestamp(date) - pd.Timestamp(row.period_end)).days / 365.25
    return out
