"""Paper accounts, proven from outside: parity with the backtest, crashes at named points, a
random-kill soak, idempotency, concurrent runs, damaged state files and data that changes."""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil

import numpy as np
import pandas as pd
import pytest

import tradesim
from click.testing import CliRunner

from fakes import FakeBackend
from paper_helpers import cli, evening, night_in_child, printed_bars, write_bars, write_config, xnys_sessions
from tradesim.cli import main
from tradesim.llm import model as model_module
from tradesim.paper import account as paper
from tradesim.paper import calendar as paper_calendar
from tradesim.paper import identity as paper_identity
from tradesim.paper import reading as paper_reading
from tradesim.paper.ledger import LEDGER, Ledger

START, SESSIONS = "2023-01-03", 120
DATES = xnys_sessions(START, SESSIONS)
INCEPTION = DATES[90]  # 2023-05-11
SPLIT_DAY, DIVIDEND_DAY = DATES[95], DATES[98]
LAST = DATES[106]
NIGHTS = DATES[90:107]
FAST = {"epochs": 3, "patience": 2, "hidden": 8}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(paper.KILL_ENV, raising=False)
    return tmp_path / "home"


@pytest.fixture
def fake_router(monkeypatch):
    monkeypatch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}"))


def frames(tickers=("AAA", "BBB", "CCC")):
    return printed_bars(tickers, START, SESSIONS, seed=4, splits={"AAA": (SPLIT_DAY, 2.0)}, dividends={"BBB": (DIVIDEND_DAY, 0.03)})


def signals_file(path, tickers, seed=1, first=85):
    rng = np.random.default_rng(seed)
    rows = []
    for day in DATES[first:]:
        if rng.uniform() < 0.6:
            weights = rng.uniform(-0.6, 0.6, len(tickers))
            weights /= max(1.0, weights.clip(min=0).sum())
            rows += [{"date": str(day.date()), "ticker": t, "weight": round(float(w), 4)} for t, w in zip(tickers, weights)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def make_account(tmp_path, strategy="momentum", tickers=("AAA", "BBB", "CCC"), name="acct", through=None, **values):
    data = write_bars(tmp_path / "data", frames(tickers), through)
    config = write_config(tmp_path / f"{name}.toml", data, strategy, tickers, **values)
    made = cli("paper", "init", name, "--config", config, "--inception", INCEPTION.date(), "--now", evening(DATES[89].date()))
    assert made.exit_code == 0, made.output
    return config


def night(name="acct", session=None, *extra):
    return cli("paper", "run", name, "--now", evening(session.date()), *extra)


def dump(name="acct", home=None):
    ledger = Ledger.open(paper_reading.account_dir(name, home))
    try:
        return ledger.dump()
    finally:
        ledger.close()


def equity(name="acct"):
    ledger = paper_reading.open_account(name)
    try:
        return paper_reading.equity_frame(ledger)
    finally:
        ledger.close()


CASES = {
    "momentum-next-open-costs": ("momentum", ("AAA", "BBB", "CCC"), {"fill": "next-open", "cost_bps": 5, "slippage_bps": 3, "params": {"lookback": 10, "top_k": 1}}),
    "momentum-next-close": ("momentum", ("AAA", "BBB", "CCC"), {"fill": "next-close", "cost_bps": 2, "params": {"lookback": 10, "top_k": 2}}),
    "signals-long-short-next-open": ("signals", ("AAA", "BBB", "CCC"), {"fill": "next-open", "cost_bps": 10, "slippage_bps": 2, "max_gross": 2}),
    "signals-long-short-next-close": ("signals", ("AAA", "BBB", "CCC"), {"fill": "next-close", "cost_bps": 3, "slippage_bps": 1, "max_gross": 2}),
    "mlp-short": ("mlp", ("AAA",), {"fill": "next-open", "cost_bps": 5, "params": {**FAST, "short": True}}),
    "llmoe": ("llmoe", ("AAA",), {"fill": "next-open", "cost_bps": 5, "params": {**FAST, "router": "fake:1"}}),
    "tradexpert": ("tradexpert", ("AAA", "BBB", "CCC"), {"fill": "next-close", "params": {"experts": "market,alpha", "general_expert": "random", "top_k": 1, "n_drop": 1, "rebalance_every": 1, "market_window": 5}}),
    "tradexpert-next-open": ("tradexpert", ("AAA", "BBB", "CCC"), {"fill": "next-open", "cost_bps": 5, "params": {"experts": "market,alpha", "general_expert": "random", "top_k": 1, "n_drop": 1, "rebalance_every": 1, "market_window": 5}}),
    "momentum-rebalance-every-3": ("momentum", ("AAA", "BBB", "CCC"), {"fill": "next-open", "cost_bps": 5, "params": {"lookback": 10, "top_k": 1, "rebalance_every": 3}}),
    "signals-first-decision-after-inception": ("signals", ("AAA", "BBB", "CCC"), {"fill": "next-open", "cost_bps": 3, "max_gross": 2}),
    # refit every 5 nights (4 folds over the 17) on every earlier session less an embargo of 1
    "mlp-walk-forward": ("mlp", ("AAA",), {"fill": "next-open", "cost_bps": 5, "walk_forward": 5, "embargo": 1, "params": FAST}),
}


@pytest.mark.parametrize("case", CASES)
def test_night_by_night_equals_the_backtest_across_a_split_and_a_dividend(tmp_path, case, fake_router):
    strategy, tickers, values = CASES[case]
    values = json.loads(json.dumps(values))
    if strategy == "signals":
        first = 93 if case == "signals-first-decision-after-inception" else 85
        values["params"] = {"signals": str(signals_file(tmp_path / "signals.csv", tickers, first=first))}
    config = make_account(tmp_path, strategy, tickers, **values)
    for session in NIGHTS:
        result = night("acct", session)
        assert result.exit_code == 0, result.output
    paper_equity = equity()
    out = tmp_path / "backtest"
    run = cli("backtest", "--config", config, "--train-end", INCEPTION.date(), "--end", LAST.date(), "--out", out)
    assert run.exit_code == 0, run.output
    backtest = pd.read_csv(out / "equity.csv", index_col="date", parse_dates=True)
    # the backtest's curve starts at its first decision; before it the account holds its capital
    assert paper_equity.index[-1] == backtest.index[-1] and set(backtest.index) <= set(paper_equity.index)
    assert (paper_equity.loc[: backtest.index[0], ["equity", "benchmark"]].iloc[:-1] == 100_000).all().all()
    paper_equity = paper_equity.loc[backtest.index[0] :]
    np.testing.assert_allclose(paper_equity["equity"], backtest["equity"], rtol=1e-9)
    np.testing.assert_allclose(paper_equity["benchmark"], backtest["benchmark"], rtol=1e-9)  # one rule: bought with the first decision
    assert paper_equity["equity"].nunique() > 3  # it traded
    if strategy == "tradexpert":  # its side tables are kept per session, as the backtest writes them
        ledger = paper_reading.open_account("acct")
        kept = paper_reading.side_table(ledger, "rankings")
        ledger.close()
        written = pd.read_parquet(out / "rankings.parquet")
        assert len(kept) > 5 and set(kept["date"]) == set(written["date"])
        pd.testing.assert_frame_equal(kept.reset_index(drop=True), written[kept.columns].reset_index(drop=True), check_dtype=False)
    if "walk_forward" in values:  # fitted on the nights that began folds 1-3, stored, and the backtest's folds are the same
        ledger = paper_reading.open_account("acct")
        refits = ledger.query("SELECT fold, session FROM refits ORDER BY fold")
        ledger.close()
        assert refits == [(k, str(NIGHTS[5 * k].date())) for k in (1, 2, 3)]
        folds = json.loads((out / "metrics.json").read_text())["folds"]
        assert [f["test_first"] for f in folds] == [str(NIGHTS[5 * k].date()) for k in range(4)]
        replayed = tradesim.open_paper("acct").backtest  # replayed with the states the ledger stored, fitting nothing
        np.testing.assert_allclose(replayed.loc[backtest.index[0]:], backtest["equity"], rtol=1e-9)
    verified = cli("paper", "verify", "acct")
    assert verified.exit_code == 0, verified.output
    if "AAA" in tickers:  # the split multiplied the benchmark's shares, at least
        ledger = paper_reading.open_account("acct")
        kinds = {row[0] for row in ledger.query("SELECT kind FROM actions")}
        ledger.close()
        assert "split" in kinds and ("dividend" in kinds or tickers == ("AAA",))


def test_dividends_credited_as_cash_are_cash_and_verify(tmp_path):
    data = write_bars(tmp_path / "data", frames(("BBB",)))
    config = write_config(tmp_path / "c.toml", data, "buy-and-hold", ["BBB"])
    assert cli("paper", "init", "cash", "--config", config, "--inception", INCEPTION.date(), "--dividends", "cash", "--now", evening(DATES[89].date())).exit_code == 0
    assert cli("paper", "init", "reinvest", "--config", config, "--inception", INCEPTION.date(), "--now", evening(DATES[89].date())).exit_code == 0
    for name in ("cash", "reinvest"):
        assert cli("paper", "run", name, "--now", evening(LAST.date()), "--max-catch-up", "20").exit_code == 0
        assert cli("paper", "verify", name).exit_code == 0
    cash, reinvest = equity("cash"), equity("reinvest")
    before = cash.index < DIVIDEND_DAY
    np.testing.assert_allclose(cash["equity"][before], reinvest["equity"][before], rtol=1e-12)
    credited = cash["cash"].diff()[DIVIDEND_DAY]
    ledger = paper_reading.open_account("cash")
    (shares, amount), = ledger.query("SELECT shares_before, dividend FROM actions WHERE book = 'account'")
    ledger.close()
    assert credited == pytest.approx(shares * amount) and amount == pytest.approx(0.03 * frames(("BBB",))["BBB"]["Close"][97], rel=1e-6)


def test_a_second_run_of_a_night_changes_nothing_and_says_what_is_next(tmp_path):
    make_account(tmp_path)
    assert night("acct", DATES[92]).exit_code == 0
    first = dump()
    again = night("acct", DATES[92])
    assert again.exit_code == 0 and f"nothing to do (next: {DATES[93].date()}" in again.output
    assert dump() == first
    early = cli("paper", "run", "acct", "--now", f"{DATES[93].date()}T15:00")  # today's session, before its close
    assert early.exit_code == 75 and f"today's session {DATES[93].date()} has not closed yet" in early.output
    assert dump() == first
    status = cli("paper", "status", "acct", "--now", f"{DATES[93].date()}T15:30")
    assert "stopped without finishing" not in status.output  # a try-later is an ordinary end, not a crash
    assert night("acct", DATES[95]).exit_code == 0  # through Friday
    saturday = cli("paper", "run", "acct", "--now", "2023-05-20T10:00")  # no session today: nothing due, not "later"
    assert saturday.exit_code == 0 and f"nothing to do (next: {DATES[96].date()}" in saturday.output


def test_catch_up_is_capped_and_late_decisions_are_flagged(tmp_path):
    make_account(tmp_path)
    result = night("acct", DATES[99], "--max-catch-up", "3")
    assert result.exit_code == 0
    assert "7 more closed sessions are due" in result.output
    frame = equity()
    assert list(frame.index) == list(DATES[90:93]) and frame["late"].all()
    assert night("acct", DATES[99], "--max-catch-up", "10").exit_code == 0
    assert equity()["late"].tolist() == [1] * 9 + [0]


def run_in_child(name, session, kill_at=None, max_catch_up=5, home=None):
    """The night after `session` closed, in a forked process (`night_in_child`). True when killed."""
    return night_in_child(name, evening(session.date()), kill_at, max_catch_up, home)


SCENARIOS = {  # nights before the crash, the night that crashes (a catch-up when several sessions are due)
    "first night": ([], DATES[90]),
    "catch-up": ([DATES[91]], DATES[94]),
    "split night": ([DATES[94]], SPLIT_DAY),
    "dividend night": ([DATES[97]], DIVIDEND_DAY),
}


@pytest.mark.parametrize("point", ["fetched", "decided", "before-commit", "after-commit", "report", "before-commit:2", "after-commit:3"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_kill_at_any_point_leaves_a_verifiable_account_that_ends_as_if_never_killed(tmp_path, home, point, scenario):
    before, crash = SCENARIOS[scenario]
    if ":" in point and scenario != "catch-up":
        pytest.skip("the n-th pass of a point needs several sessions in one run")
    make_account(tmp_path, cost_bps=5)
    reference_home = tmp_path / "reference"
    made = paper.init_account("acct", _config(tmp_path), inception=str(INCEPTION.date()), now=paper_calendar.parse_now(evening(DATES[89].date())), home=reference_home)
    assert made
    for session in [*before, crash]:
        assert not run_in_child("acct", session, home=reference_home)
    for session in before:
        assert not run_in_child("acct", session)
    assert run_in_child("acct", crash, kill_at=point)
    checked = cli("paper", "verify", "acct")
    assert checked.exit_code == 0, checked.output
    status = cli("paper", "status", "acct", "--now", evening(crash.date()))
    assert "stopped without finishing" in status.output
    assert not run_in_child("acct", crash)
    assert dump() == dump(home=reference_home)
    assert (home / "paper" / "acct" / "orders.csv").read_bytes() == (reference_home / "paper" / "acct" / "orders.csv").read_bytes()


@pytest.mark.parametrize("point, asks", [("decided", False), ("fetched", True)])
def test_a_rerun_after_the_model_answered_makes_no_model_calls_and_decides_the_same(tmp_path, home, monkeypatch, point, asks):
    backends = []

    def counting(target, options):
        backends.append(FakeBackend(f"fake:{target}"))
        return backends[-1]

    monkeypatch.setitem(model_module.BACKENDS, "fake", counting)
    llmoe = {"fill": "next-open", "cost_bps": 5, "params": {**FAST, "router": "fake:1"}}
    make_account(tmp_path, "llmoe", ("AAA",), **llmoe)
    assert not run_in_child("acct", DATES[90])
    reference_home = tmp_path / "reference"
    shutil.copytree(home / "paper", reference_home / "paper")  # the same account, never to be killed
    assert run_in_child("acct", DATES[92], kill_at=point)  # a catch-up of two sessions, killed
    backends.clear()
    assert night("acct", DATES[92]).exit_code == 0
    prompts = sum(len(call) for backend in backends for call in backend.calls)
    assert (prompts > 0) == asks  # killed before the answers: asked again; after them: all from the cache
    assert not run_in_child("acct", DATES[92], home=reference_home)
    assert dump() == dump(home=reference_home)


def _config(tmp_path):
    from tradesim.config import read_toml, resolve

    return resolve(read_toml(tmp_path / "acct.toml"), {})


def test_random_kills_over_a_twenty_night_catch_up_end_where_an_unkilled_run_does(tmp_path, home):
    make_account(tmp_path, cost_bps=5, slippage_bps=2)
    reference_home = tmp_path / "reference"
    paper.init_account("acct", _config(tmp_path), inception=str(INCEPTION.date()), now=paper_calendar.parse_now(evening(DATES[89].date())), home=reference_home)
    end = DATES[109]
    assert not run_in_child("acct", end, max_catch_up=20, home=reference_home)
    rng = random.Random(20)
    kills = 0
    for _ in range(60):
        point = rng.choice(paper.KILL_POINTS)
        point += f":{rng.randint(1, 3)}" if point.endswith("commit") else ""  # passed once per session
        if not run_in_child("acct", end, kill_at=point, max_catch_up=20):
            break
        kills += 1
        assert cli("paper", "verify", "acct").exit_code == 0
    assert kills >= 5
    assert dump() == dump(home=reference_home)


def test_two_runs_at_once_process_each_session_once(tmp_path, home):
    make_account(tmp_path)
    lock = open(home / "paper" / "acct" / "lock", "a")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    busy = night("acct", DATES[95])
    assert busy.exit_code == 75 and "another `tradesim paper run`" in busy.output
    lock.close()
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                paper.run_account("acct", now=paper_calendar.parse_now(evening(DATES[95].date())), max_catch_up=10)
            except paper.TradesimError:
                os._exit(75)
            finally:
                os._exit(0)
        children.append(pid)
    codes = sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children)
    assert codes[0] == 0 and codes[1] in (0, 75)
    frame = equity()
    assert list(frame.index) == list(DATES[90:96])
    assert cli("paper", "verify", "acct").exit_code == 0


@pytest.mark.parametrize("damage", ["truncated", "zeroed tail", "deleted wal"])
def test_a_damaged_ledger_is_refused_with_exit_2_never_started_again(tmp_path, home, damage):
    make_account(tmp_path)
    directory = home / "paper" / "acct"
    if damage == "deleted wal":
        assert not run_in_child("acct", DATES[92])
        assert run_in_child("acct", DATES[93], kill_at="after-commit")
        (directory / (LEDGER + "-wal")).unlink()
    else:
        assert night("acct", DATES[95]).exit_code == 0
        path = directory / LEDGER
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            if damage == "truncated":
                handle.truncate(size // 2)
            else:
                handle.seek(size - 8192)
                handle.write(b"\0" * 8192)
    size = (directory / LEDGER).stat().st_size
    for command in (["run", "acct", "--now", evening(DATES[96].date())], ["status", "acct"], ["verify", "acct"]):
        result = cli("paper", *command)
        assert result.exit_code == 2, (command, result.output)
        assert "ledger" in result.output and "never re-initialised" in result.output or "corrupt" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert (directory / LEDGER).stat().st_size == size


def test_a_restated_bar_is_refused_until_resolved(tmp_path):
    make_account(tmp_path)
    assert night("acct", DATES[92]).exit_code == 0
    changed = frames()
    changed["BBB"].loc[91, ["Open", "High", "Low", "Close", "Adj Close"]] *= 1.01  # a bar the account used, restated at the source
    write_bars(tmp_path / "data", changed)
    before = dump()
    refused = night("acct", DATES[93])
    assert refused.exit_code == 2
    assert f"restated/{DATES[91].date()}/BBB" in refused.output and "already used" in refused.output
    status = cli("paper", "status", "acct", "--now", evening(DATES[93].date()))
    assert "(open)" in status.output and "stopped without finishing" not in status.output  # a refusal is no crash
    assert cli("paper", "resolve", "acct", f"restated/{DATES[91].date()}/BBB", "--accept", "--reason", "vendor correction").exit_code == 0
    resumed = night("acct", DATES[93])
    assert resumed.exit_code == 0, resumed.output
    assert equity().index[-1] == DATES[93]
    assert dump().startswith(before.split("\n")[0])


def test_a_jump_without_a_split_is_refused_and_a_missing_bar_is_try_later(tmp_path):
    make_account(tmp_path)
    changed = frames()
    for column in ("Open", "High", "Low", "Close", "Adj Close"):
        changed["CCC"].loc[92:, column] /= 3  # a 3:1 split the source forgot to record
    write_bars(tmp_path / "data", changed, through=str(DATES[92].date()))
    assert night("acct", DATES[91]).exit_code == 0
    refused = night("acct", DATES[92])
    assert refused.exit_code == 2 and f"jump/{DATES[92].date()}/CCC" in refused.output and "no split explains" in refused.output
    assert equity().index[-1] == DATES[91]
    later = night("acct", DATES[93])  # the file has no bar for it yet
    assert later.exit_code in (2, 75)
    assert cli("paper", "resolve", "acct", f"jump/{DATES[92].date()}/CCC", "--ignore", "--reason", "checked: a real crash").exit_code == 0
    waiting = night("acct", DATES[93])
    assert waiting.exit_code == 75 and f"no bar for AAA, BBB, CCC on {DATES[93].date()}" in waiting.output
    assert equity().index[-1] == DATES[92]  # what could be processed was
    assert night("acct", DATES[95]).exit_code == 75  # three closed sessions without a bar: still late, not dead
    dead = night("acct", DATES[96])
    assert dead.exit_code == 2 and "looks dead" in dead.output and str(tmp_path / "data") in dead.output
    assert f"no bar for AAA, BBB, CCC on {DATES[93].date()}" in dead.output and "4 closed" not in dead.output


@pytest.mark.parametrize("change", ["code", "models"])
def test_a_changed_fingerprint_is_refused_then_accepted_as_a_new_epoch(tmp_path, monkeypatch, fake_router, change):
    if change == "code":
        make_account(tmp_path)
    else:
        make_account(tmp_path, "llmoe", ("AAA",), params={**FAST, "router": "fake:1"})
    assert night("acct", DATES[91]).exit_code == 0
    if change == "code":
        monkeypatch.setattr(paper, "fingerprint_parts", lambda *args: {**paper_identity.fingerprint_parts(*args), "code": "changed"})
    else:  # the same spec now serves other weights
        monkeypatch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}-retrained"))
    before = dump()
    refused = night("acct", DATES[92])
    assert refused.exit_code == 2 and f"({change})" in refused.output and "--accept-change" in refused.output
    assert dump() == before  # a refusal stores nothing
    accepted = night("acct", DATES[92], "--accept-change", "a reason")
    assert accepted.exit_code == 0 and "epoch 2 starts on" in accepted.output
    assert equity()["epoch"].tolist() == [1, 1, 2]
    ledger = paper_reading.open_account("acct")
    (reason, parts), = ledger.query("SELECT reason, parts FROM epochs WHERE epoch = 2")
    ledger.close()
    assert reason == "a reason" and ("retrained" in parts) == (change == "models")
    assert night("acct", DATES[93]).exit_code == 0


def test_init_refuses_what_a_paper_account_cannot_be(tmp_path):
    data = write_bars(tmp_path / "data", frames(("AAA",)))
    for values, expected in (
        ({"llm_cache": "off"}, "llm_cache off"),
        ({"fill": "same-close"}, "same-close"),
    ):
        config = write_config(tmp_path / "bad.toml", data, "buy-and-hold", ["AAA"], **values)
        result = cli("paper", "init", "bad", "--config", config, "--now", evening(DATES[89].date()))
        assert result.exit_code == 1 and expected in result.output
    config = write_config(tmp_path / "ok.toml", data, "buy-and-hold", ["AAA"])
    assert cli("paper", "init", "ok", "--config", config, "--inception", "2023-05-13").exit_code == 1  # a Saturday
    assert cli("paper", "init", "ok", "--config", config, "--now", evening(DATES[89].date())).exit_code == 0
    again = cli("paper", "init", "ok", "--config", config)
    assert again.exit_code == 1 and "already exists" in again.output
    assert "ok: buy-and-hold on AAA" in cli("paper", "list").output


def test_orders_report_and_notify(tmp_path):
    make_account(tmp_path, params={"lookback": 10, "top_k": 1})
    seen = tmp_path / "notified.json"
    result = night("acct", DATES[93], "--notify-cmd", f"cat > {seen}")
    assert result.exit_code == 0
    summary = json.loads(seen.read_text())
    assert summary["processed"] == [str(d.date()) for d in DATES[90:94]] and summary["orders"]
    orders = cli("paper", "orders", "acct", "--csv")
    table = pd.read_csv(pd.io.common.StringIO(orders.output))
    assert list(table["ticker"]) == ["AAA", "BBB", "CCC"] and table["target_weight"].sum() == pytest.approx(1.0)
    assert all(str(DATES[94].date()) == s for s in table["fill_session"])
    report = cli("paper", "report", "acct")
    assert report.exit_code == 0 and "backtest of the same sessions ends at" in report.output
    page = (tmp_path / "home" / "paper" / "acct" / "report.html").read_text()
    assert "Orders for the next session" in page and "rank 1" in page
    refused = night("missing", DATES[93], "--notify-cmd", f"cat > {seen}")
    assert refused.exit_code == 1 and json.loads(seen.read_text())["status"] == "refused"


def test_yahoo_source_nightly(tmp_path, monkeypatch):
    from test_yahoo import FakeYahoo
    from tradesim.market import yahoo

    served = FakeYahoo(start="2019-01-02", sessions=130)
    served.printed["date"] = xnys_sessions("2019-01-02", 130)
    monkeypatch.setattr(yahoo, "_download", served.download)
    monkeypatch.setattr(yahoo, "_now", lambda: served.now)
    dates = pd.DatetimeIndex(served.printed["date"])
    split_day = dates[int(np.flatnonzero(served.printed["split"] > 0)[0])]
    config = write_config(tmp_path / "y.toml", "yahoo", "momentum", ["MSFT"], cost_bps=5)
    inception = dates[dates.get_loc(split_day) - 3]
    served.now = paper_calendar.parse_now(evening(dates[dates.get_loc(inception) - 1].date()))
    assert cli("paper", "init", "y", "--config", config, "--inception", inception.date(), "--now", evening(dates[dates.get_loc(inception) - 1].date())).exit_code == 0
    for session in dates[dates.get_loc(inception) : dates.get_loc(split_day) + 6]:
        served.now = paper_calendar.parse_now(evening(session.date()))
        result = cli("paper", "run", "y", "--now", evening(session.date()))
        assert result.exit_code == 0, result.output
    frame = equity("y")
    out = tmp_path / "bt"
    assert cli("backtest", "--config", config, "--train-end", inception.date(), "--end", frame.index[-1].date(), "--out", out).exit_code == 0
    backtest = pd.read_csv(out / "equity.csv", index_col="date", parse_dates=True)
    np.testing.assert_allclose(frame["equity"], backtest["equity"], rtol=1e-9)
    assert cli("paper", "verify", "y").exit_code == 0


def test_the_account_opened_from_python_and_its_plot(tmp_path):
    import tradesim
    from tradesim import plots

    make_account(tmp_path, cost_bps=5, params={"lookback": 10, "top_k": 1})
    for session in NIGHTS[:8]:
        assert night("acct", session).exit_code == 0
    account = tradesim.open_paper("acct")
    frame = equity()
    np.testing.assert_array_equal(account.equity["strategy"], frame["equity"])
    assert len(account.fills) == len(paper_reading.open_account("acct").query("SELECT * FROM fills"))
    assert list(account.orders["ticker"]) == ["AAA", "BBB", "CCC"] and account.orders["fill_session"].iloc[0] == str(NIGHTS[8].date())
    assert account.positions.index[-1] == NIGHTS[7] and account.decisions["action"].isin(["buy", "sell", "hold"]).all()
    assert account.status(evening(NIGHTS[7].date()))["last_processed"] == str(NIGHTS[7].date())
    lines = {line.get_label(): line.get_ydata() for line in plots.paper_vs_backtest(account).axes[0].get_lines()}
    np.testing.assert_array_equal(lines["paper acct"], frame["equity"])
    backtest = account.backtest
    np.testing.assert_allclose(frame["equity"].reindex(backtest.index), backtest, rtol=1e-9)
    label = next(name for name in lines if name.startswith("backtest"))
    gap = float(label.split("largest gap ")[1].rstrip(")"))
    assert gap < 1e-9
    with pytest.raises(paper.TradesimError, match="not found|no paper account"):
        tradesim.open_paper("absent")


def test_a_read_only_account_is_read_by_status_orders_and_verify_and_run_says_what_it_cannot_write(tmp_path, home, monkeypatch):
    from test_homes import read_only

    make_account(tmp_path)
    assert night("acct", DATES[92]).exit_code == 0
    with read_only(home) as frozen:
        monkeypatch.setenv("TRADESIM_HOME", str(frozen))
        status = cli("paper", "status", "acct", "--now", evening(DATES[93].date()))
        assert status.exit_code == 0 and "corrupt" not in status.output and "backup" not in status.output
        assert "crash" not in status.output.lower() and "stopped without finishing" not in status.output
        assert cli("paper", "verify", "acct").exit_code == 0
        assert cli("paper", "orders", "acct").exit_code == 0
        refused = CliRunner().invoke(main, ["paper", "run", "acct", "--now", evening(DATES[93].date())])
        lines = refused.output.strip().splitlines()
        assert refused.exit_code != 0 and len(lines) == 1 and ("cannot write" in lines[0] or "cannot be written" in lines[0]), refused.output


def test_the_code_identity_covers_every_module_that_decides_in_an_installed_copy(tmp_path):
    """Edit real source files of a copy of the package (as `pip install -U` would replace them):
    each module a decision goes through changes the account's code identity; a plot does not."""
    import subprocess
    import sys
    from pathlib import Path

    import tradesim

    site = tmp_path / "site"
    root = Path(tradesim.__file__).parent.parent
    for package in ("tradesim", "strategies"):
        shutil.copytree(root / package, site / package, ignore=shutil.ignore_patterns("__pycache__", "data"))

    def identity():
        script = (
            f"import sys; sys.path.insert(0, {str(site)!r}); import tradesim; assert tradesim.__file__.startswith({str(site)!r}); "
            "from tradesim.plugins import get_strategy; from tradesim.paper.identity import code_hash; print(code_hash(get_strategy('llmoe')))"
        )
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()

    before = identity()
    for relative in ("tradesim/market/features.py", "tradesim/llm/base.py", "tradesim/models/networks.py"):
        path = site / relative
        original = path.read_text()
        path.write_text(original + "\nEDITED_BY_AN_UPGRADE = 1\n")
        assert identity() != before, relative
        path.write_text(original)
    assert identity() == before
    (site / "tradesim/plots.py").write_text((site / "tradesim/plots.py").read_text() + "\n# a new colour\n")
    assert identity() == before
    assert "numpy" in json.loads(paper_identity.library_versions()) and json.loads(paper_identity.library_versions())["numpy"] == np.__version__


def test_a_night_refuses_a_ledger_edited_after_its_commit(tmp_path):
    import sqlite3

    make_account(tmp_path)
    assert night("acct", DATES[93]).exit_code == 0
    path = paper_reading.account_dir("acct") / LEDGER
    with sqlite3.connect(path) as connection:
        changed = connection.execute("UPDATE fills SET price = price * 1.01 WHERE rowid = (SELECT MIN(rowid) FROM fills)").rowcount
    assert changed == 1
    assert cli("paper", "verify", "acct").exit_code != 0
    refused = night("acct", DATES[94])
    assert refused.exit_code == 2 and "do not match its hash chain" in refused.output and "paper verify" in refused.output
    assert equity().index[-1] == DATES[93]


def test_now_past_the_exchange_calendar_is_one_line(tmp_path):
    make_account(tmp_path)
    for command in ("run", "status"):
        result = CliRunner().invoke(main, ["paper", command, "acct", "--now", "2100-01-04T18:30"])
        assert result.exit_code == 1 and "outside the XNYS calendar" in result.output and len(result.output.strip().splitlines()) == 1
