"""The downstream tasks with their standard splits (FinBen/PIXIU conventions).

* `fpb`: Financial PhraseBank `Sentences_50Agree`, FinBERT's split (80/20 with random_state 0, then
  10% of the training part as validation, random_state 0): 970 test sentences; also evaluated on the
  FLARE validation set (774 sentences) as a second test set, `fpb-flare`.
* `fiqa-sa`: FiQA-SA as three classes, the FinBen split (`finben_split.csv`, 235 test).
* `fomc`: `lab-manual-split-combine` of Trillion Dollar Words, its three seeds (5768, 78516, 944601).
* `acl18`: StockNet movement, test 2015-10-01..2016-01-01, train to 2015-08-01, rise when the
  adjusted close gains >= 0.55%, fall at <= -0.5%, other days dropped; the input is the last 5
  sessions as a FLARE table plus the tweets visible by the close of the last one.

No sentence of any test set reaches training: training (and validation) rows whose normalised
text equals a test sentence of the same task are dropped, and the count is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tradesim.errors import TradesimError
from tradesim.evaluation.flare import flare_rows, read_price_source, window_text
from tradesim.evaluation.text import normalise

LABELS = {
    "fpb": ("negative", "neutral", "positive"),
    "fiqa-sa": ("negative", "neutral", "positive"),
    "fomc": ("dovish", "hawkish", "neutral"),
    "acl18": ("fall", "rise"),
}
TASKS = tuple(LABELS)
FOMC_SEEDS = (5768, 78516, 944601)
ACL18 = {"train": ("2014-01-01", "2015-08-01"), "valid": ("2015-08-01", "2015-10-01"), "test": ("2015-10-01", "2016-01-01")}
ACL18_RISE, ACL18_FALL = 0.55, -0.5
ACL18_SESSIONS = 5
ACL18_TWEETS = 3


@dataclass
class Split:
    """One train/valid/test split of a task: frames with `text` and `label` (an index into labels)."""

    task: str
    variant: str  # e.g. "fpb", "fpb-flare", "fomc-5768"
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    record: dict = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS[self.task]


def read_fpb_lines(path: Path) -> list[tuple[str, str]]:
    rows = []
    for raw in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        text, sep, label = raw.strip().rpartition("@")
        if sep and label in LABELS["fpb"]:
            rows.append((text.strip(), label))
    if not rows:
        raise TradesimError(f"{path}: no 'sentence@label' lines")
    return rows


def _frame(texts, labels, names) -> pd.DataFrame:
    index = {name: i for i, name in enumerate(names)}
    return pd.DataFrame({"text": [str(t) for t in texts], "label": [index[str(x).strip().lower()] for x in labels]})


def _without_test(split: Split, *tests: pd.DataFrame) -> Split:
    seen = {normalise(t) for test in tests for t in test["text"]}
    dropped = {}
    for name in ("train", "valid"):
        frame = getattr(split, name)
        keep = ~frame["text"].map(normalise).isin(seen)
        dropped[name] = int((~keep).sum())
        setattr(split, name, frame[keep].reset_index(drop=True))
    split.record["dropped_as_test_duplicates"] = dropped
    return split


def fpb_splits(sentiment: Path) -> list[Split]:
    from sklearn.model_selection import train_test_split

    rows = read_fpb_lines(sentiment / "fpb" / "Sentences_50Agree.txt")
    frame = _frame([r[0] for r in rows], [r[1] for r in rows], LABELS["fpb"])
    train, test = train_test_split(frame, test_size=0.2, random_state=0)
    train, valid = train_test_split(train, test_size=0.1, random_state=0)
    flare_path = sentiment / "fpb" / "flare_valid.jsonl"
    if not flare_path.is_file():
        raise TradesimError(f"{flare_path}: the FLARE FPB validation set is missing")
    flare = pd.read_json(flare_path, lines=True)
    flare = _frame(flare["sentence"], flare["label"], LABELS["fpb"])
    parts = [train.reset_index(drop=True), valid.reset_index(drop=True)]
    finbert = _without_test(Split("fpb", "fpb", *parts, test.reset_index(drop=True)), test, flare)
    return [finbert, Split("fpb", "fpb-flare", finbert.train, finbert.valid, flare, dict(finbert.record))]


def fiqa_splits(sentiment: Path) -> list[Split]:
    path = sentiment / "fiqa" / "finben_split.csv"
    if not path.is_file():
        raise TradesimError(f"{path}: the FinBen FiQA-SA split is missing")
    frame = pd.read_csv(path)
    parts = {name: _frame(g["text"], g["label"], LABELS["fiqa-sa"]) for name, g in frame.groupby("split")}
    if set(parts) != {"train", "valid", "test"}:
        raise TradesimError(f"{path}: expected splits train, valid and test in column split, found {', '.join(sorted(parts))}")
    return [_without_test(Split("fiqa-sa", "fiqa-sa", parts["train"], parts["valid"], parts["test"]), parts["test"])]


def fomc_splits(sentiment: Path) -> list[Split]:
    from sklearn.model_selection import train_test_split

    splits = []
    for seed in FOMC_SEEDS:
        paths = [sentiment / "fomc" / "splits" / f"lab-manual-split-combine-{part}-{seed}.csv" for part in ("train", "test")]
        for path in paths:
            if not path.is_file():
                raise TradesimError(f"{path}: FOMC split file missing")
        train, test = (pd.read_csv(p) for p in paths)
        train = pd.DataFrame({"text": train["sentence"].astype(str), "label": train["label"].astype(int)})
        test = pd.DataFrame({"text": test["sentence"].astype(str), "label": test["label"].astype(int)})
        train, valid = train_test_split(train, test_size=0.1, random_state=0)
        split = Split("fomc", f"fomc-{seed}", train.reset_index(drop=True), valid.reset_index(drop=True), test)
        splits.append(_without_test(split, test))
    return splits


def read_tweets(path: Path) -> pd.DataFrame:
    frame = pd.read_json(path, lines=True, dtype=False)
    if frame.empty:
        return read_tweets_empty()
    return pd.DataFrame({"time": pd.to_datetime(frame["created_at"], utc=True), "text": frame["text"].astype(str)}).sort_values("time")


def movement_text(table_text: str, tweets: list[str]) -> str:
    """Tweets first, then the table: an encoder that truncates from the left keeps the latest rows."""
    parts = [f"Tweet: {' '.join(t.split()[:30])}" for t in tweets]
    return "\n".join([*parts, table_text])


def visible_tweets(tweets: pd.DataFrame, close_utc: pd.Timestamp, since_utc: pd.Timestamp, limit: int = ACL18_TWEETS) -> list[str]:
    lo, hi = tweets["time"].searchsorted(since_utc, "right"), tweets["time"].searchsorted(close_utc, "right")
    texts = list(dict.fromkeys(tweets["text"].iloc[lo:hi][::-1]))  # newest first, repeats (retweets) once
    return texts[:limit]


def session_close_utc(day: pd.Timestamp) -> pd.Timestamp:
    return pd.Timestamp(f"{day:%Y-%m-%d} 16:00", tz="America/New_York").tz_convert("UTC")


def acl18_split(stocknet: Path, train_limit: int | None = 1200, seed: int = 0) -> Split:
    """Examples for every StockNet ticker and session d with a known next session: input up to d's
    close, label from the adjusted close of d+1 against d. `train_limit` samples the training
    examples, and half as many validation examples (stratified by label, seeded); the test set is
    kept whole."""
    prices = read_price_source(stocknet / "price_raw")
    rows = []
    for ticker, bars in prices.items():
        bars = bars.dropna()
        table = flare_rows(bars)
        tweet_path = stocknet / "tweets" / f"{ticker}.jsonl"
        tweets = read_tweets(tweet_path) if tweet_path.is_file() else read_tweets_empty()
        change = (bars["adj_close"].shift(-1) / bars["adj_close"] - 1) * 100  # d -> d+1
        target_day = pd.Series(bars.index, index=bars.index).shift(-1)
        for position, day in enumerate(table.index):
            target = target_day.get(day)
            if target is None or pd.isna(target) or not (pd.Timestamp(ACL18["train"][0]) <= target < pd.Timestamp(ACL18["test"][1])):
                continue
            move = change.get(day)
            if not (move >= ACL18_RISE or move <= ACL18_FALL):
                continue
            text = window_text(table, day, ACL18_SESSIONS)
            if text is None:
                continue
            start = table.index[max(0, position - ACL18_SESSIONS)]
            shown = visible_tweets(tweets, session_close_utc(day), session_close_utc(start))
            rows.append((ticker, day, target, movement_text(text, shown), int(move >= ACL18_RISE)))
    frame = pd.DataFrame(rows, columns=["ticker", "date", "target", "text", "label"])
    if frame.empty:
        raise TradesimError(f"{stocknet}: no ACL18 examples (price_raw/<TICKER>.csv and tweets/<TICKER>.jsonl expected)")
    parts = {}
    for name, (lo, hi) in ACL18.items():
        parts[name] = frame[(frame["target"] >= lo) & (frame["target"] < hi)].reset_index(drop=True)
    available = {name: len(parts[name]) for name in ("train", "valid")}
    if train_limit is not None:
        for name, limit in (("train", train_limit), ("valid", max(2, train_limit // 2))):
            if len(parts[name]) > limit:
                parts[name] = stratified_sample(parts[name], limit, seed)
    # the train period ends at 2015-08-01: an example's input and label both lie before it
    record = {"examples_available": available, "train_sampled": len(parts["train"]), "valid_sampled": len(parts["valid"]), "rise_threshold_pct": ACL18_RISE, "fall_threshold_pct": ACL18_FALL}
    return Split("acl18", "acl18", parts["train"], parts["valid"], parts["test"], record)


def read_tweets_empty() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "text": pd.Series([], dtype=str)})


def stratified_sample(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    from sklearn.model_selection import train_test_split

    sample, _ = train_test_split(frame, train_size=limit, random_state=seed, stratify=frame["label"])
    return sample.sort_values(["date", "ticker"]).reset_index(drop=True)


def load_splits(task: str, shared: Path, acl18_train_limit: int | None = 1200) -> list[Split]:
    sentiment = shared / "sentiment"
    if task == "fpb":
        return fpb_splits(sentiment)
    if task == "fiqa-sa":
        return fiqa_splits(sentiment)
    if task == "fomc":
        return fomc_splits(sentiment)
    if task == "acl18":
        return [acl18_split(shared / "stocknet", acl18_train_limit)]
    raise TradesimError(f"--task: expected one of {', '.join(TASKS)} or all, got {task!r}")


def shared_directory(path: str) -> Path:
    """`--shared`: the folder of the public datasets, which must exist."""
    shared = Path(path)
    if not shared.is_dir():
        raise TradesimError(f"--shared {path}: no such directory (the layout of ../shared/data: corpora/, sentiment/, stocknet/, sp500/)")
    return shared
