"""A memorization probe: does a model know what the market did, with no market data in the prompt?

For each ticker and session it asks the model whether the stock closed up or down that day (through
the same option scoring and cache as routers) and, for models that generate, its closing price. It
scores the answers against the data month by month: accuracy with a binomial interval against the
chance rate (the accuracy of answers with the model's own share of "Up" that know nothing of the
day), and, with a Holm correction over the months, the last month whose accuracy is above chance:
the estimated effective cutoff. Testing each of 24 months at 5% would find a false cutoff in about
half of an honest model's probes; the Holm rule keeps that near 5% in all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.llm.base import Chat

INSTRUCTIONS = "You are a stock market historian. Answer from memory with one word: Up or Down."
OPTIONS = ("Up", "Down")
DESCRIPTIONS = ("the stock closed higher than on the previous trading day", "the stock closed lower than on the previous trading day")
PRICE_INSTRUCTIONS = "You are a stock market historian. Answer from memory with the number only."
SIGNIFICANCE = 0.05


def direction_prompt(ticker: str, day: pd.Timestamp) -> Chat:
    return Chat(INSTRUCTIONS, f"Did {ticker} stock close higher or lower on {day:%A, %B} {day.day}, {day.year} ({day.date()}) than on the previous trading day?\nAnswer:")


def price_prompt(ticker: str, day: pd.Timestamp) -> Chat:
    return Chat(PRICE_INSTRUCTIONS, f"What was the closing price of {ticker} stock on {day:%B} {day.day}, {day.year} ({day.date()}), in US dollars?\nAnswer:")


DATES = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?|\d{4}-\d\d-\d\d|\b(?:19|20)\d\d\b",
    re.IGNORECASE,
)
PRICE_TOKENS = 24  # enough for "The closing price of X stock on <date> was $123.45"


def parse_price(text: str) -> float | None:
    """The price in an answer: a dollar amount, else the first number that is not part of a date
    (models often restate the question's date first)."""
    text = DATES.sub(" ", text or "")
    found = re.search(r"\$\s*(\d[\d,]*(?:\.\d+)?)", text) or re.search(r"(\d[\d,]*(?:\.\d+)?)", text)
    if not found:
        return None
    try:
        value = float(found.group(1).replace(",", ""))
    except ValueError:
        return None
    return value if value > 0 else None


@dataclass
class ProbeResult:
    answers: pd.DataFrame  # one row per ticker and session
    months: pd.DataFrame  # one row per month
    summary: dict[str, Any]


def ask(model, questions: pd.DataFrame, prices: bool) -> pd.DataFrame:
    """The model's answers for `questions` (ticker, date, up, raw_close)."""
    prompts = [direction_prompt(t, d) for t, d in zip(questions["ticker"], questions["date"])]
    answers = questions.copy()
    answers["p_up"] = model.choose(prompts, OPTIONS, DESCRIPTIONS)[:, 0] if prompts else []
    answers["answer_up"] = answers["p_up"] >= 0.5
    answers["correct"] = answers["answer_up"] == answers["up"]
    if prices and model.can_generate:
        texts = model.generate([price_prompt(t, d) for t, d in zip(questions["ticker"], questions["date"])], max_new_tokens=PRICE_TOKENS, stop=["\n"])
        answers["price_answer"] = [parse_price(text) for text in texts]
        answers["price_error"] = (answers["price_answer"] / answers["raw_close"] - 1).abs()
    return answers


def score(answers: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Accuracy per month with a Wilson interval, the chance rate, one-sided binomial p-values, Holm
    over the months; the estimated effective cutoff."""
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests

    rows = []
    for month, group in answers.groupby(answers["date"].dt.to_period("M")):
        n, correct = len(group), int(group["correct"].sum())
        said_up, were_up = group["answer_up"].mean(), group["up"].mean()
        chance = said_up * were_up + (1 - said_up) * (1 - were_up)
        test = binomtest(correct, n, min(max(chance, 1e-9), 1 - 1e-9), alternative="greater")
        low, high = binomtest(correct, n).proportion_ci(0.95, method="wilson")
        row = {"month": str(month), "questions": n, "accuracy": correct / n, "low": low, "high": high, "chance": chance, "p_value": test.pvalue}
        if "price_error" in group:
            row["median_price_error"] = float(group["price_error"].median()) if group["price_error"].notna().any() else None
            row["price_answers"] = int(group["price_error"].notna().sum())
        rows.append(row)
    months = pd.DataFrame(rows)
    if months.empty:
        raise TradesimError("probe: no session with a previous close in the period")
    months["holm_p_value"] = multipletests(months["p_value"], alpha=SIGNIFICANCE, method="holm")[1]
    months["above_chance"] = months["holm_p_value"] < SIGNIFICANCE
    above = months.loc[months["above_chance"], "month"]
    estimate = None if above.empty else str(pd.Period(above.iloc[-1]).end_time.date())
    summary = {
        "questions": int(len(answers)),
        "accuracy": float(answers["correct"].mean()),
        "months": int(len(months)),
        "months_above_chance": int(months["above_chance"].sum()),
        "estimated_cutoff": estimate,
        "rule": f"the last month whose accuracy is above chance at {SIGNIFICANCE:.0%} after a Holm correction over the {len(months)} months",
    }
    if "median_price_error" in months:
        summary["median_price_error"] = float(answers["price_error"].median()) if answers["price_error"].notna().any() else None
    return months, summary


def questions_of(data, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Every ticker's sessions from `start` to `end` that have a previous close: the true direction
    (adjusted close to close) and the close as printed that day."""
    close, raw = data.bars["close"], data.bars["raw_close"] if "raw_close" in data.bars else data.bars["close"]
    change = close.pct_change(fill_method=None)
    frames = []
    for ticker in data.tickers:
        moved = change[ticker].loc[start:end].dropna()
        moved = moved[moved != 0]
        frames.append(pd.DataFrame({"ticker": ticker, "date": moved.index, "up": (moved > 0).to_numpy(), "raw_close": raw[ticker].reindex(moved.index).to_numpy()}))
    return pd.concat(frames, ignore_index=True).sort_values(["date", "ticker"], ignore_index=True)


def run_probe(model, data, start: str, end: str, *, prices: bool = True) -> ProbeResult:
    questions = questions_of(data, pd.Timestamp(start), pd.Timestamp(end))
    answers = ask(model, questions, prices)
    months, summary = score(answers)
    return ProbeResult(answers, months, summary)


def probe_model(
    spec: str, source: str, tickers: str | None, start: str, end: str, *, prices: bool = True,
    cutoffs: dict[str, str] | None = None, device: str = "auto", llm_cache: str = "readwrite",
) -> ProbeResult:
    """`tradesim probe`: load the data (from ten days before `start`, for the first previous
    close) and the model, ask, score, and say what was asked of what, with the stated cutoff."""
    from tradesim.evidence.cutoffs import cutoff_of
    from tradesim.market.data import load_market_data
    from tradesim.strategy import Runtime

    if start > end:
        raise TradesimError(f"--start {start} is after --end {end}")
    stated = cutoff_of(spec, cutoffs)
    market = load_market_data(source, tickers, str((pd.Timestamp(start) - pd.Timedelta(days=10)).date()), end)
    model = Runtime(device=device, llm_cache=llm_cache, progress=True).load_model(spec)
    result = run_probe(model, market, start, end, prices=prices)
    result.summary.update({
        "model": spec, "stated_cutoff": None if stated.date is None else str(stated.date.date()), "stated_cutoff_source": stated.source,
        "tickers": list(market.tickers), "start": start, "end": end, "data": source, "data_fingerprint": market.fingerprint,
        "model_fingerprint": model.fingerprint, "can_generate": model.can_generate, "asked_prices": bool(prices and model.can_generate),
    })
    return result


def months_table(months: pd.DataFrame) -> str:
    lines = [f"{'month':<8}  {'n':>4}  {'accuracy':>8}  {'95% interval':>14}  {'chance':>6}  {'Holm p':>7}" + ("  price error" if "median_price_error" in months else "")]
    for row in months.itertuples():
        line = f"{row.month:<8}  {row.questions:>4}  {row.accuracy:>8.3f}  [{row.low:.2f}, {row.high:.2f}]  {row.chance:>6.3f}  {row.holm_p_value:>7.3f}"
        if "median_price_error" in months:
            line += f"  {'n/a' if row.median_price_error is None or pd.isna(row.median_price_error) else f'{row.median_price_error:.1%}'}"
        lines.append(line + ("  above chance" if row.above_chance else ""))
    return "\n".join(lines)


def plot(months: pd.DataFrame, summary: dict[str, Any], title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4))
    x = np.arange(len(months))
    axis.errorbar(x, months["accuracy"], yerr=[months["accuracy"] - months["low"], months["high"] - months["accuracy"]], fmt="o", label="accuracy (95% interval)")
    axis.plot(x, months["chance"], "k--", label="chance")
    for stated in ("stated_cutoff", "estimated_cutoff"):
        day = summary.get(stated)
        month = None if not day else str(pd.Timestamp(day).to_period("M"))
        if month and months["month"].iloc[0] <= month <= months["month"].iloc[-1]:  # drawn only inside the probed months
            position = int((months["month"] <= month).sum()) - 1
            axis.axvline(position + 0.5, color="red" if stated == "estimated_cutoff" else "grey", label=stated.replace("_", " ") + f" {day}")
    axis.set_xticks(x, months["month"], rotation=90, fontsize=7)
    axis.set_ylim(0, 1)
    axis.set_ylabel("direction accuracy")
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def check_out(out: Path) -> None:
    """Refuse an --out that holds anything: a probe never replaces files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TradesimError(f"--out {out}: already exists and is not empty (choose another directory)")


def write_probe(result: ProbeResult, out: Path, title: str) -> Path:
    """probe.csv (every answer), probe.json (the summary and the months), probe.png; all or nothing."""
    from tradesim.rundir import staged_directory

    out = Path(out)
    with staged_directory(out, lambda: check_out(out)) as staging:
        result.answers.to_csv(staging / "probe.csv", index=False, date_format="%Y-%m-%d", float_format="%.6g")
        document = {**result.summary, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "months_table": result.months.to_dict(orient="records")}
        (staging / "probe.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
        (staging / "probe.png").write_bytes(plot(result.months, result.summary, title))
    return out
