"""How a nightly run ends early (try later, or refused until a person looks) and its test-only
crash points."""

from __future__ import annotations

import os
import signal
from collections import Counter

from tradesim.errors import TradesimError

KILL_ENV = "TRADESIM_PAPER_KILL_AT"  # test-only: "point" or "point:n", the process kills itself there
KILL_POINTS = ("fetched", "decided", "before-commit", "after-commit", "report")
BROKER_KILL_POINTS = ("reconciled", "submitted")  # a broker account's night also passes these


class PaperRetry(TradesimError):
    """Not now: the session has not closed, a bar is not there yet, another run holds the account."""

    exit_code = 75


class PaperRefusal(TradesimError):
    """Refused until a person looks: restated bars, unmatched jumps, a changed fingerprint."""

    exit_code = 2


_reached: Counter = Counter()


def checkpoint(point: str) -> None:
    """Test-only crash hook: with TRADESIM_PAPER_KILL_AT=point[:n] the process dies here (SIGKILL,
    no cleanup) the n-th time it passes."""
    wanted = os.environ.get(KILL_ENV)
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name == point:
        _reached[point] += 1
        if _reached[point] >= int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)
