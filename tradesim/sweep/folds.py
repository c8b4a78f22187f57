"""Walk-forward folds: refit every N test sessions on what was known before the fold.

Fold k tests the sessions `test[k*N : (k+1)*N]`. It is fitted on a view that ends `embargo`
sessions before the session preceding its first test session (the fill-to-fill labels of the view
are only those known inside it, so no label reaches past the view's last session, and the embargo
leaves that many more sessions out). `train_window` K keeps only the last K sessions of that view
(`expanding`: all of them). The first fold with embargo 0 is the one-shot fit before `--train-end`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tradesim.errors import TradesimError


@dataclass(frozen=True)
class Fold:
    number: int
    train_first: pd.Timestamp  # first session the fold's training view holds
    train_last: pd.Timestamp  # the view's last session: what the fold is fitted as of
    test_first: pd.Timestamp
    test_last: pd.Timestamp
    first_index: int  # positions in the data's sessions of train_first and train_last
    last_index: int

    def training_view(self, data):
        """The view the fold is fitted on: its window of `data`, as of `train_last`."""
        return data.sessions_from(self.first_index).view(self.train_last)

    def describe(self) -> dict[str, str | int]:
        return {
            "fold": self.number,
            "train_first": str(self.train_first.date()),
            "train_last": str(self.train_last.date()),
            "test_first": str(self.test_first.date()),
            "test_last": str(self.test_last.date()),
        }


def training_range(position: int, train_window: int | str, embargo: int) -> tuple[int, int]:
    """(first, last) positions of the sessions a fold whose first test session is at `position`
    is fitted on; last < 0 when the embargo leaves nothing."""
    last = position - 1 - embargo
    first = 0 if train_window == "expanding" else max(0, last + 1 - int(train_window))
    return first, last


def plan_folds(sessions: pd.DatetimeIndex, test: pd.DatetimeIndex, every: int, train_window: int | str, embargo: int) -> list[Fold]:
    """The folds of a walk-forward run over `test` (the sessions from --train-end on)."""
    folds = []
    for number, start in enumerate(range(0, len(test), every)):
        first_test = test[start]
        first, last = training_range(int(sessions.get_loc(first_test)), train_window, embargo)
        if last < 0:
            raise TradesimError(
                f"--embargo {embargo}: fold {number} (testing from {first_test.date()}) leaves no session to train on"
            )
        folds.append(Fold(number, sessions[first], sessions[last], first_test, test[min(start + every, len(test)) - 1], first, last))
    return folds


def fold_of(folds: list[Fold], dates: pd.DatetimeIndex) -> list[int]:
    """The fold each decision date falls in."""
    starts = pd.DatetimeIndex([fold.test_first for fold in folds])
    return [int(i) - 1 for i in starts.searchsorted(dates, side="right")]
