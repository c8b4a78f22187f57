"""Build the embedded sample (`--data sample`) from the StockNet dataset (MIT licence).

    python data/build_sample.py [--stocknet ../shared/data/stocknet]

Writes into tradesim/data/stocknet/ (inside the package, so an installed tradesim has it):
* prices.csv.xz: ticker,date,open,high,low,close,adj_close,volume for the TICKERS below,
  2014-01-02..2015-12-31, exactly as StockNet's price_raw files give them;
* news.jsonl.xz: id, created_at (UTC), ticker, text; the first 5 tweets (by created_at) of each
  ticker and UTC day, so whether a tweet is in the sample depends only on tweets before it;
* LICENSE (StockNet's MIT licence) and README.md (source and citation).

The output is byte-for-byte reproducible (sorted rows; xz output carries no timestamp).
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
from pathlib import Path

import pandas as pd

from tradesim.market.tables import read_table

TICKERS = (
    "AAPL", "MSFT", "AMZN", "GOOG", "FB", "INTC", "CSCO", "ORCL", "JPM", "BAC",
    "WFC", "C", "JNJ", "PFE", "MRK", "XOM", "CVX", "KO", "PG", "WMT",
)
FIRST, LAST = "2014-01-02", "2015-12-31"
TWEETS_PER_DAY = 5
OUT = Path(__file__).resolve().parent.parent / "tradesim" / "data" / "stocknet"
CITATION = """# StockNet sample

A slice of the StockNet dataset (ACL 2018), which is released under the MIT licence (LICENSE,
beside this file). Built by `data/build_sample.py` in the tradesim repository.

* `prices.csv.xz`: daily Yahoo bars of 20 tickers, 2014-01-02..2015-12-31 (`Open/High/Low/Close`
  split-adjusted, `adj_close` split- and dividend-adjusted, as StockNet has them).
* `news.jsonl.xz`: the first 5 tweets of each ticker and UTC day, with only id, UTC timestamp,
  ticker and text (no user names).

Cite:

Yumo Xu and Shay B. Cohen. 2018. Stock Movement Prediction from Tweets and Historical Prices.
In Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics
(Volume 1: Long Papers), pages 1970-1979, Melbourne, Australia.
https://aclanthology.org/P18-1183
"""


def _xz(path: Path, text: str) -> None:
    path.write_bytes(lzma.compress(text.encode(), preset=9 | lzma.PRESET_EXTREME))


def build(stocknet: Path, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    prices = []
    for ticker in TICKERS:
        frame = pd.read_csv(stocknet / "price_raw" / f"{ticker}.csv", dtype=str)
        frame = frame[(frame["Date"] >= FIRST) & (frame["Date"] <= LAST)]
        frame.columns = ["date", "open", "high", "low", "close", "adj_close", "volume"]
        prices.append(frame.assign(ticker=ticker)[["ticker", "date", "open", "high", "low", "close", "adj_close", "volume"]])
    _xz(out / "prices.csv.xz", pd.concat(prices).to_csv(index=False))

    lines = []
    for ticker in TICKERS:
        tweets = read_table(stocknet / "tweets" / f"{ticker}.jsonl")
        tweets = tweets[(tweets["created_at"] >= FIRST) & (tweets["created_at"] < "2016-01-01")]
        tweets = tweets.sort_values(["created_at", "id"]).drop_duplicates("id")
        tweets = tweets.groupby(tweets["created_at"].str[:10], sort=True).head(TWEETS_PER_DAY)
        for row in tweets.itertuples():
            text = " ".join(str(row.text).split())
            lines.append(json.dumps({"id": str(row.id), "created_at": row.created_at, "ticker": ticker, "text": text}))
    _xz(out / "news.jsonl.xz", "\n".join(lines) + "\n")
    shutil.copyfile(stocknet / "LICENSE", out / "LICENSE")
    (out / "README.md").write_text(CITATION)
    print(f"wrote {out}: {sum(len(p) for p in prices)} bars, {len(lines)} tweets")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stocknet", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "stocknet")
    parser.add_argument("--out", type=Path, default=OUT)
    arguments = parser.parse_args()
    build(arguments.stocknet, arguments.out)
