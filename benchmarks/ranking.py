"""Ranking methods against a simulated language-model comparator: comparisons used, top-K precision.

    python benchmarks/ranking.py [--trials 5]

Each item has a hidden quality. The comparator answers P(a beats b) from the quality gap through a
logistic curve, plus noise on every answer, a bias towards whichever stock is named first, and a
fixed set of flipped pairs (so its answers are sometimes non-transitive: A>B>C>A). Every method
ranks through `both_orders` (each pair asked in both orders, as the General Expert does). Printed
per N in {100, 500} and K in {10, 20}: comparisons and top-K precision (share of the true top K
found) of each method, averaged over trials, and the ratios of `budgeted` to `all-pairs`.
Target: budgeted keeps >= 95% of all-pairs' precision with <= 15% of its comparisons at N=100 and
<= 5% at N=500.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tradesim.ranking import METHODS, both_orders, rank

NOISE = 0.15  # standard deviation of the noise on each answer (probability units)
POSITION_BIAS = 0.1  # added to P(first beats second)
FLIPPED = 0.05  # share of pairs whose answer is reversed, consistently
SLOPE = 1.5  # logistic slope on quality differences (qualities are standard normal)


def simulated_comparator(quality: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    n = len(quality)
    flipped = np.triu(rng.uniform(size=(n, n)) < FLIPPED, 1)
    flipped = flipped | flipped.T

    def compare(pairs):
        a = np.array([p[0] for p in pairs])
        b = np.array([p[1] for p in pairs])
        gap = np.where(flipped[a, b], -1, 1) * (quality[a] - quality[b])
        p = 1 / (1 + np.exp(-SLOPE * gap)) + POSITION_BIAS + rng.normal(0, NOISE, len(pairs))
        return np.clip(p, 0, 1)

    return compare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--ks", default="10,20")
    args = parser.parse_args()
    targets = {100: 0.15, 500: 0.05}
    print(f"{'N':>4} {'K':>3}  {'method':<10} {'comparisons':>11} {'rounds':>6} {'precision':>9} {'cycles':>7} {'seconds':>7}")
    for n in map(int, args.sizes.split(",")):
        for k in map(int, args.ks.split(",")):
            results = {}
            for method in METHODS:
                used, precision, rounds, cycles, seconds = [], [], [], [], []
                for trial in range(args.trials):
                    quality = np.random.default_rng(1000 + trial).normal(size=n)
                    truth = set(np.argsort(-quality)[:k])
                    compare = both_orders(simulated_comparator(quality, trial))
                    started = time.perf_counter()
                    result = rank(list(range(n)), compare, method, k=k, seed=trial)
                    seconds.append(time.perf_counter() - started)
                    used.append(result.comparisons)
                    rounds.append(result.rounds)
                    cycles.append(result.cycles)
                    precision.append(len(truth & set(result.top(k))) / k)
                results[method] = (np.mean(used), np.mean(precision))
                print(
                    f"{n:>4} {k:>3}  {method:<10} {np.mean(used):>11.0f} {np.mean(rounds):>6.0f} {np.mean(precision):>9.3f} "
                    f"{np.mean(cycles):>7.0f} {np.mean(seconds):>7.2f}"
                )
            share = results["budgeted"][0] / results["all-pairs"][0]
            kept = results["budgeted"][1] / results["all-pairs"][1]
            target = targets.get(n)
            verdict = "" if target is None else (" (target met)" if share <= target and kept >= 0.95 else " (target MISSED)")
            print(f"{n:>4} {k:>3}  budgeted/all-pairs: {share:.1%} of the comparisons, {kept:.1%} of the precision{verdict}")


if __name__ == "__main__":
    main()
