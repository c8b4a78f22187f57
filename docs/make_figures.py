"""Draw the README's figures (docs/images/) from the embedded sample, with the analysis API the
notebooks use: one per notebook. Offline; about two minutes on 2 cores with a cold cache.

    .venv/bin/python docs/make_figures.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

import tradesim
from tradesim import plots
from tradesim.config import resolve
from tradesim.paper import account as paper
from tradesim.paper import calendar as paper_calendar

IMAGES = Path(__file__).parent / "images"


def save(figure, name: str) -> None:
    figure.savefig(IMAGES / f"{name}.png", dpi=72)
    print(IMAGES / f"{name}.png")


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    llmoe = tradesim.backtest(strategy="llmoe", ticker="MSFT", progress=False)
    runs = [llmoe, *(tradesim.backtest(strategy=name, ticker="MSFT", progress=False) for name in ("mlp", "lstm", "moe-gate"))]
    runs += [tradesim.backtest(strategy="llmoe", ticker="MSFT", router=router, progress=False) for router in ("random", "oracle")]
    save(plots.compare(tradesim.open_runs(runs)), "01-equity-curves")
    save(plots.router_timeline(llmoe), "02-router-study")
    ranked = tradesim.backtest(strategy="tradexpert", tickers="all", experts="market,alpha", progress=False)
    save(plots.rank_ic(ranked, window=5), "03-ranking-portfolio")
    home = Path(tempfile.mkdtemp(prefix="tradesim-paper-"))
    config = resolve({}, {"strategy": "llmoe", "tickers": "MSFT", "cost_bps": 5, "params": {}})
    paper.init_account("msft", config, inception="2015-11-02", now=paper_calendar.parse_now("2015-10-30T18:00"), home=home)
    paper.run_account("msft", now=paper_calendar.parse_now("2015-12-16T18:30"), max_catch_up=40, home=home)  # as the notebook: a catch-up,
    for evening in pd.bdate_range("2015-12-17", "2015-12-31"):  # then every evening
        paper.run_account("msft", now=paper_calendar.parse_now(f"{evening.date()}T18:30"), home=home)
    save(plots.paper_vs_backtest(tradesim.open_paper("msft", home=home)), "04-paper-account")


if __name__ == "__main__":
    main()
