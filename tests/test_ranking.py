"""Ranking methods on known orders, budgets, cycles and batching."""

import numpy as np
import pytest

from tradesim.ranking import METHODS, both_orders, count_cycles, default_budget, rank


class Counting:
    """A comparator from hidden qualities that counts its calls and the pairs it was asked."""

    def __init__(self, quality, answer=None):
        self.quality = quality
        self.answer = answer
        self.calls = 0
        self.pairs = 0

    def __call__(self, pairs):
        self.calls += 1
        self.pairs += len(pairs)
        if self.answer is not None:
            return [self.answer(a, b) for a, b in pairs]
        return [1.0 if self.quality[a] > self.quality[b] else 0.0 for a, b in pairs]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_recovers_a_consistent_order(method):
    rng = np.random.default_rng(3)
    names = [f"S{i}" for i in range(40)]
    quality = dict(zip(names, rng.permutation(40)))
    compare = Counting(quality)
    result = rank(names, compare, method, k=5, seed=1)
    truth = sorted(names, key=lambda n: -quality[n])
    if method == "budgeted":
        assert result.top(5) == truth[:5]
        assert result.comparisons < 40 * 39 // 2
    else:
        assert result.order == truth
    assert sorted(result.order) == sorted(names)
    assert result.comparisons == compare.pairs
    assert result.rounds == compare.calls  # one batch per round
    assert result.cycles == 0
    ordered_scores = [result.scores[n] for n in result.order]
    assert ordered_scores == sorted(ordered_scores, reverse=True)


def test_all_pairs_is_one_batch_and_counts_wins():
    quality = {"A": 3, "B": 2, "C": 1}
    compare = Counting(quality)
    result = rank(list(quality), compare, "all-pairs", k=1)
    assert compare.calls == 1 and result.comparisons == 3
    assert [round(result.scores[x]) for x in "ABC"] == [2, 1, 0]


@pytest.mark.parametrize("n,k,budget", [(60, 5, 150), (200, 10, 500), (30, 3, 40)])
def test_budgeted_never_exceeds_its_budget(n, k, budget):
    quality = np.random.default_rng(n).normal(size=n)
    compare = Counting(quality, lambda a, b: float(np.clip(0.5 + quality[a] - quality[b], 0, 1)))
    result = rank(list(range(n)), compare, "budgeted", k=k, budget=budget)
    assert compare.pairs == result.comparisons <= budget
    assert len(result.order) == n


def test_default_budget_is_far_below_all_pairs():
    assert default_budget(100, 10) <= 0.15 * 4950
    assert default_budget(500, 20) <= 0.05 * 124750
    assert default_budget(5, 5) == 10  # never more than all pairs


def test_a_budget_too_small_for_a_full_method_is_refused():
    with pytest.raises(ValueError, match="budget"):
        rank(list(range(10)), Counting(list(range(10))), "all-pairs", budget=20)


def test_cycles_are_counted_and_shown():
    beats = {("R", "S"), ("S", "P"), ("P", "R")}  # rock, paper, scissors
    compare = Counting(None, lambda a, b: 1.0 if (a, b) in beats else 0.0)
    result = rank(["R", "P", "S"], compare, "all-pairs", k=1)
    assert result.cycles == 1
    assert sorted(result.cycle_examples[0]) == ["P", "R", "S"]
    assert {round(result.scores[x]) for x in "RPS"} == {1}


def test_count_cycles_matches_brute_force():
    rng = np.random.default_rng(0)
    n = 12
    wins = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(i + 1, n):
            if rng.uniform() < 0.7:
                wins[i, j] = rng.uniform()
                wins[j, i] = 1 - wins[i, j]
    beat = np.nan_to_num(wins, nan=0.5) > 0.5
    brute = sum(
        1
        for i in range(n)
        for j in range(n)
        for k in range(n)
        if i < j and i < k and beat[i, j] and beat[j, k] and beat[k, i]
    )
    count, examples = count_cycles(wins)
    assert count == brute > 0
    for i, j, k in examples:
        assert beat[i, j] and beat[j, k] and beat[k, i]


def test_both_orders_cancels_a_position_bias():
    biased = both_orders(lambda pairs: [0.8 if a == b else 0.7 for a, b in pairs])  # always prefers the first
    assert np.allclose(biased([("A", "B"), ("C", "D")]), 0.5)
    quality = {"A": 1.0, "B": 0.0}
    fair = both_orders(lambda pairs: [min(1.0, 0.2 + 0.6 * (quality[a] > quality[b]) + 0.2) for a, b in pairs])
    assert fair([("A", "B")])[0] > 0.5 > fair([("B", "A")])[0]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="method"):
        rank(["A", "B"], Counting({"A": 1, "B": 0}), "heapsort")
    with pytest.raises(ValueError, match="distinct"):
        rank(["A", "A"], Counting({"A": 1}), "all-pairs")
    with pytest.raises(ValueError, match="probability"):
        rank(["A", "B"], lambda pairs: [1.5], "all-pairs")


def _perfect(reverse=False):
    """P(a beats b) = 1 when a's hidden quality is higher; qualities rise (or fall) with input order."""
    return lambda pairs: [float((a < b) if reverse else (a > b)) for a, b in pairs]


def test_budgeted_has_no_input_order_bias_and_gains_precision_with_budget():
    from tradesim.ranking import minimum_budget

    worst_first = rank(list(range(20)), _perfect(), "budgeted", k=5, budget=minimum_budget(20, 5))
    assert len(set(worst_first.top(5)) & set(range(15, 20))) >= 3  # the five best, not the first five names
    n, k = 100, 10
    precision, first_names = {}, []
    for budget in (minimum_budget(n, k), 250, 500):
        found = []
        for trial in range(12):
            quality = np.random.default_rng(trial).permutation(n)
            items = [int(q) for q in quality]  # input order unrelated to quality
            result = rank(items, _perfect(), "budgeted", k=k, budget=budget, seed=trial)
            found.append(len(set(result.top(k)) & set(range(n - k, n))) / k)
            first_names.append(np.mean([items.index(item) < 30 for item in result.top(k)]))
        precision[budget] = float(np.mean(found))
    budgets = sorted(precision)
    assert precision[budgets[0]] >= 0.25 and precision[budgets[-1]] >= 0.9  # chance: 0.1
    assert precision[budgets[0]] <= precision[budgets[1]] <= precision[budgets[2]]
    assert 0.2 <= float(np.mean(first_names)) <= 0.4  # the first 30 of 100 names: about 30% of the picks, as chance gives


def test_a_budget_below_the_minimum_is_refused_before_any_comparison():
    asked = []
    with pytest.raises(ValueError, match="needs at least 30"):
        rank(list(range(20)), lambda pairs: asked.extend(pairs) or [0.5] * len(pairs), "budgeted", k=5, budget=10)
    assert asked == []


def test_a_pair_asked_both_ways_counts_both_answers():
    answers = {("a", "b"): 0.9, ("b", "c"): 0.9, ("c", "a"): 0.9, ("b", "a"): 0.6}  # the second answer contradicts the first
    from tradesim.ranking import _Asker

    asker = _Asker(["a", "b", "c"], lambda pairs: [answers[p] for p in pairs], None)
    asker.ask([(0, 1), (1, 2), (2, 0)])
    asker.ask([(1, 0)])
    wins = asker.beats()
    assert wins[0, 1] == pytest.approx((0.9 + 0.4) / 2) and wins[1, 0] == pytest.approx(1 - wins[0, 1])
    assert asker.finish([0, 1, 2], np.zeros(3)).cycles == 1  # a > b (on balance) > c > a
