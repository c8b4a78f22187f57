"""TradExpert's trained specialists against their `facts` versions and chance, on the same dates.

    python benchmarks/tradexpert_specialists.py sp500      # ../shared/data/sp500, 100 tickers
    python benchmarks/tradexpert_specialists.py stocknet   # ../shared/data/stocknet, 87 tickers with tweets

Runs `tradesim backtest --strategy tradexpert` as child processes with a new, empty $TRADESIM_HOME:
1. all trained: the reprogrammed Market Analyst (SmolLM2-135M, `smollm2`), the LightGBM Alpha
   expert and the trained News Analyst (the data has no fundamentals: that expert stays `facts`),
   the fitted General Expert over them, rank mode; timed cold, then again with
   `--no-reuse-decisions` (every fitted model loaded from its store, every prediction made again),
   then repeated (the stored decisions reused);
2. today's TradExpert (every expert `facts`), and the `random` General Expert (chance);
3. each expert's `facts` version alone: the fitted General Expert with `--experts X --mode predict`.

Each specialist alone is scored from run 1's reports table (its prediction for every ticker and
decision date), each `facts` version from its run's scores (P(rise)), chance from run 2's random
scores, all on the same test dates, against the same H-session fill-to-fill returns:
* RankIC: per date the Spearman correlation across tickers; mean, Newey-West 95% interval;
* direction accuracy: prediction >= 0.5 against a rise, Wilson 95% interval, the majority rate;
* relative accuracy: a score above the day's median against a return above the day's median
  (the Alpha expert's own target), Wilson 95% interval.
Prints markdown tables (the README's) and writes them beside the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

TRADESIM = Path(sys.executable).with_name("tradesim")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = {
    "sample": ["--tickers", "all"],  # the embedded sample: 20 tickers, no news
    "sp500": ["--tickers", "all", "--data", str(SHARED / "sp500" / "sp500_top100_daily_2012_2021.csv"), "--start", "2016-01-01",
              "--train-end", "2019-04-22"],
    "stocknet": ["--tickers", "all", "--data", str(SHARED / "stocknet" / "price_raw"), "--news", str(SHARED / "stocknet" / "tweets"),
                 "--start", "2014-01-01", "--end", "2015-12-31", "--train-end", "2015-06-30"],
}
TRAINED = ["--market-expert", "reprogrammed", "--alpha-expert", "lightgbm", "--news-expert", "trained"]
EXPERTS = ("market", "alpha", "news")


def backtest(home: Path, out: Path, args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(TRADESIM), "backtest", "--strategy", "tradexpert", *args, "--out", str(out)],
                          env={**os.environ, "TRADESIM_HOME": str(home)}, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(args)}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return time.perf_counter() - started


def scores(run, expert: str | None) -> pd.DataFrame:
    """decision dates x tickers: an expert's predictions (from the reports table) or the run's scores."""
    if expert is None:
        return run.scores()
    reports = run.table("reports")
    mine = reports[reports["expert"] == expert]
    table = mine.pivot(index="date", columns="ticker", values="prediction").astype(float)
    table.index = pd.to_datetime(table.index)
    return table.reindex(columns=run.tickers)


def quality(table: pd.DataFrame, realized: pd.DataFrame, horizon: int) -> dict:
    from tradesim.evidence.significance import prediction_evidence, rank_ic_evidence
    from tradesim.metrics import daily_rank_ic

    table = table.reindex(realized.index)
    evidence = rank_ic_evidence(daily_rank_ic(table, realized), horizon)
    usable = table.notna() & realized.notna()
    direction = prediction_evidence(realized[usable].stack() > 0, table[usable].stack() >= 0.5, reps=1000, seed=0)
    above = table[usable].sub(table[usable].median(axis=1), axis=0) > 0
    beats = realized[usable].sub(realized[usable].median(axis=1), axis=0) > 0
    relative = prediction_evidence(beats[usable].stack(), above[usable].stack(), reps=1000, seed=0)
    return {"rank_ic": evidence, "direction": direction, "relative": relative}


def interval(values) -> str:
    return "n/a" if not values else f"[{values[0]:+.3f}, {values[1]:+.3f}]" if abs(values[0]) < 1 else f"[{values[0]:.1%}, {values[1]:.1%}]"


def row(name: str, q: dict) -> str:
    ic, d, r = q["rank_ic"], q["direction"], q["relative"]
    return (f"| {name} | {ic['mean']:+.3f} {interval(ic['interval'])} | {d['accuracy']:.1%} [{d['accuracy_interval'][0]:.1%}, "
            f"{d['accuracy_interval'][1]:.1%}] (majority {d['majority_rate']:.1%}) | {r['accuracy']:.1%} "
            f"[{r['accuracy_interval'][0]:.1%}, {r['accuracy_interval'][1]:.1%}] |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", choices=sorted(DATA))
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a new temporary directory)")
    parser.add_argument("--extra", default="", help="more backtest options for every run, e.g. '--specialist-samples 200'")
    args = parser.parse_args()
    from tradesim.runs import open_run

    root = args.out or Path(tempfile.mkdtemp(prefix=f"tradexpert-{args.data}-"))
    home = root / "home"
    base = DATA[args.data] + args.extra.split()
    times = {}
    times["trained, cold"] = backtest(home, root / "trained", [*base, *TRAINED])
    times["trained, models loaded"] = backtest(home, root / "trained-loaded", [*base, *TRAINED, "--no-reuse-decisions"])
    times["trained, repeated"] = backtest(home, root / "trained-again", [*base, *TRAINED])
    times["today"] = backtest(home, root / "today", base)
    times["random"] = backtest(home, root / "random", [*base, "--general-expert", "random"])
    for expert in EXPERTS:
        times[f"{expert} facts alone"] = backtest(home, root / f"facts-{expert}", [*base, "--experts", expert, "--mode", "predict"])

    trained = open_run(root / "trained")
    realized = trained.realized()
    horizon = int(trained.results["ranking"]["horizon"])
    dates = int(realized.notna().any(axis=1).sum())  # decision dates whose H-session return is known
    lines = [f"## {args.data}: specialists alone ({dates} test dates, {len(trained.tickers)} tickers, H = {horizon})", "",
             "| expert | RankIC, mean [95% HAC] | direction accuracy [95%] | relative accuracy [95%] |", "| --- | --- | --- | --- |"]
    for expert in EXPERTS:
        kind = {"market": "reprogrammed (SmolLM2-135M)", "alpha": "LightGBM", "news": "trained"}[expert]
        lines.append(row(f"{expert}: {kind}", quality(scores(trained, expert), realized, horizon)))
        facts = open_run(root / f"facts-{expert}")
        lines.append(row(f"{expert}: facts (fitted General Expert on them alone)", quality(scores(facts, None), realized, horizon)))
    lines.append(row("chance (random General Expert)", quality(scores(open_run(root / "random"), None), realized, horizon)))
    lines += ["", "| General Expert | RankIC, mean [95% HAC] | annual return | Sharpe | max drawdown |", "| --- | --- | --- | --- | --- |"]
    for name, folder in (("fitted, trained specialists", "trained"), ("fitted, facts (today's)", "today"), ("random", "random")):
        metrics = json.loads((root / folder / "metrics.json").read_text())
        ic = metrics["significance"]["rank_ic"]
        lines.append(f"| {name} | {ic['mean']:+.3f} {interval(ic['interval'])} | {metrics['annual_return']:.1%} | {metrics['sharpe']:.2f} | "
                     f"{metrics['max_drawdown']:.1%} |")
    equal = json.loads((root / "today" / "metrics.json").read_text())["benchmark"]
    lines.append(f"| equal-weight universe | | {equal['annual_return']:.1%} | {equal['sharpe']:.2f} | {equal['max_drawdown']:.1%} |")
    run = json.loads((root / "trained" / "run.json").read_text())
    fitted = run["strategy"].get("fitted_models", [])
    lines += ["", "| run | seconds |", "| --- | --- |", *(f"| {name} | {seconds:.0f} |" for name, seconds in times.items()), "",
              "fitted: " + "; ".join(f"{f.get('role', 'general expert')}: {f.get('seconds', '')} s, {f.get('rows', '')} rows" for f in fitted)]
    text = "\n".join(lines)
    (root / "specialists.md").write_text(text + "\n")
    print(text)
    print(f"\nruns: {root}")


if __name__ == "__main__":
    main()
