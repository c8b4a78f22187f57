"""The `tradesim` command: parse, call the library, print. Heavy imports happen inside commands."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path
from typing import Any

import click

from tradesim.config import CACHE_MODES, FILL_MODES, SHARED_DEFAULT
from tradesim.errors import TradesimError


# A read-only or full disk: where something must be written, one line names it.
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


class TradesimGroup(click.Group):
    """Turns input errors into one clear line and a non-zero exit, never a traceback; adds the
    commands plug-ins register (`tradesim.commands`), loaded only when named or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from tradesim.plugins import command_names

        return sorted({*super().list_commands(ctx), *command_names()})

    def get_command(self, ctx: click.Context, name: str):
        found = super().get_command(ctx, name)
        if found is not None:
            return found
        from tradesim.plugins import command

        try:
            return command(name)
        except TradesimError as error:
            raise click.ClickException(str(error)) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TradesimError as error:
            exception = click.ClickException(str(error))
            exception.exit_code = error.exit_code
            raise exception from None
        except OSError as error:
            if error.errno not in UNWRITABLE:
                raise
            raise click.ClickException(f"cannot write {error.filename or 'a file'}: {error.strerror}") from None
        except click.UsageError as error:  # a bad flag value: its message alone, not the usage text
            command = (error.ctx or ctx).command_path
            raise click.ClickException(f"{error.format_message()} (`{command} --help` lists the options)") from None


@click.group(cls=TradesimGroup)
@click.version_option(package_name="tradesim")
def main() -> None:
    """Backtest trading strategies built from mixtures of language-model experts."""


def parse_strategy_args(args: tuple[str, ...], strategy_class) -> dict[str, Any]:
    """Read `--name value`, `--name=value`, `--flag` and `--no-flag` for the strategy's own parameters."""
    params = {p.flag: p for p in strategy_class.params}
    negations = {"--no-" + p.flag[2:]: p for p in strategy_class.params if p.type is bool}
    names = ", ".join(params) or "none"
    values: dict[str, Any] = {}
    tokens = list(args)
    while tokens:
        token = tokens.pop(0)
        flag, has_value, inline = token.partition("=")
        if flag in negations and not has_value:
            values[negations[flag].name] = False
            continue
        if flag not in params:
            what = "unexpected argument" if not token.startswith("-") else "no such option"
            raise TradesimError(f"{what} {flag!r} for strategy {strategy_class.name} (its parameters: {names})")
        param = params[flag]
        if has_value:
            values[param.name] = inline
        elif param.type is bool:
            values[param.name] = True
        elif tokens:
            values[param.name] = tokens.pop(0)
        else:
            raise TradesimError(f"{flag}: expects a value")
    return values


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--strategy", help="Strategy name (see `tradesim strategies`).")
@click.option("--ticker", help="One ticker.")
@click.option("--tickers", help="Several tickers, comma-separated; `all`: every ticker of the source.")
@click.option("--data", help="sample (default), sample-long, yahoo, or a CSV/Parquet file or directory.")
@click.option("--news", help="News file or directory of per-ticker files (JSONL, CSV, Parquet).")
@click.option("--fundamentals", help="Fundamentals file: ticker, period_end, published_at, field, value (CSV or Parquet).")
@click.option("--start", help="First date of data to load (YYYY-MM-DD).")
@click.option("--end", help="Last date of data to load (YYYY-MM-DD).")
@click.option("--train-end", help="Learned parts fit strictly before this date; metrics cover the rest.")
@click.option("--fill", type=click.Choice(FILL_MODES), help="Fill at the next session's open (default) or close; same-close reproduces the papers (flagged).")
@click.option("--cost-bps", type=float, help="Commission in basis points of traded value.")
@click.option("--slippage-bps", type=float, help="Slippage in basis points of the fill price.")
@click.option("--capital", type=float, help="Starting capital (default 100000).")
@click.option("--risk-free", type=float, help="Annual risk-free rate for Sharpe and Sortino, a fraction (default 0).")
@click.option("--max-gross", type=float, help="Most gross exposure (sum of |weights|) a decision may ask for (default 1: no leverage).")
@click.option("--cutoff", help="Decision cutoff for news, HH:MM America/New_York (default 16:00).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1 ... for models.")
@click.option("--llm-cache", type=click.Choice(CACHE_MODES), help="Language-model cache mode (default readwrite).")
@click.option("--reuse-decisions/--no-reuse-decisions", default=None, help="Reuse the decisions of an identical earlier pass when only trading changed (default: reuse).")
@click.option("--seeds", type=int, help="Run with this many seeds (--seed, --seed+1, ...) and report each metric's mean and standard deviation (default 1).")
@click.option("--sig-reps", type=int, help="Bootstrap resamples behind the intervals and tests (default 2000; seeded by --seed).")
@click.option("--study", help="The trial ledger's study this run counts in (default: the data, tickers and test period).")
@click.option("--model-cutoff", "model_cutoffs", multiple=True, help="SPEC=YYYY-MM-DD: a model's training cutoff (repeatable; beyond tradesim's table).")
@click.option("--cutoff-embargo-days", type=int, help="Days after a model's cutoff whose decisions count as near it, not after (default 90).")
@click.option("--require-post-cutoff", is_flag=True, default=None, help="Refuse a run whose decisions lie mostly before a model's training cutoff.")
@click.option("--walk-forward", type=int, help="Learned strategies: refit every N test sessions (the first fold trains before --train-end; default 0: fit once).")
@click.option("--train-window", help="Walk-forward training: expanding (default: every earlier session) or K (the last K sessions).")
@click.option("--embargo", type=int, help="Walk-forward: sessions left out between a fold's training and its first decision, beyond the label horizon (default 0).")
@click.option("--out", help="Run directory (default runs/<UTC time>-<strategy>-<tickers>/).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out directory.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML file holding any of these options.")
@click.argument("strategy_args", nargs=-1, type=click.UNPROCESSED)
def backtest(config_path: Path | None, overwrite: bool, ticker: str | None, tickers: str | None, strategy_args, **options) -> None:
    """Backtest a strategy and write a run directory.

    Strategy parameters follow as their own flags, e.g. `--lookback 60` for momentum;
    `tradesim strategies` lists them.
    """
    from tradesim.backtesting import configure

    if ticker and tickers:
        raise TradesimError("--ticker and --tickers: give one of them, not both")
    options["tickers"] = ticker or tickers
    options["model_cutoffs"] = list(options["model_cutoffs"]) or None
    config, strategy_class = configure(config_path, options, lambda strategy_class: parse_strategy_args(strategy_args, strategy_class))

    from tradesim.backtesting import run_backtest
    from tradesim.report import metrics_table
    from tradesim.rundir import argv_of_process, check_run_dir, default_run_dir, write_run_directory

    if config.out:
        check_run_dir(Path(config.out), overwrite)
    result = run_backtest(config, strategy_class, progress=True)
    out = Path(config.out) if config.out else default_run_dir(config.strategy, result.data.tickers)
    write_run_directory(result, out, argv=argv_of_process(), overwrite=overwrite)
    period = result.metrics["period"]
    click.echo(
        f"{config.strategy} on {', '.join(result.data.tickers)}: {period['first_decision']}..{period['last_session']} "
        f"({period['sessions']} sessions), fills {result.fill}"
    )
    for note in result.notes:
        click.echo(f"note: {note}")
    for model in result.strategy.models():
        click.echo(
            f"model {model['spec']}: {model['model_calls']} calls, {model['cache_hits']} cache hits, "
            f"{model['prompt_tokens']} prompt tokens, {model['model_seconds']:.1f} s"
        )
    click.echo(metrics_table(result.metrics))
    for line in result.metrics["significance"]["in_words"]:
        click.echo(f"evidence: {line}")
    if "seeds" in result.metrics:
        from tradesim.metrics import format_metric

        spread = result.metrics["seeds"]["metrics"]
        click.echo(f"seeds {', '.join(map(str, result.metrics['seeds']['seeds']))}: " + "; ".join(
            f"{name} {format_metric(name, v['mean'])} ± {format_metric(name, v['std'])}" for name, v in spread.items() if name in ("total_return", "sharpe", "max_drawdown")
        ))
    click.echo(f"run directory: {out}")


@main.command("strategies")
def list_strategies() -> None:
    """List the strategies with a one-line description and their parameters."""
    from tradesim.plugins import distributions, get_strategy, strategy_names

    origins = distributions()
    for name in strategy_names():
        origin = "" if origins.get(name) == "tradesim" else f" [plug-in from {origins.get(name) or 'an unknown package'}]"
        try:
            strategy_class = get_strategy(name)
        except TradesimError as error:  # one broken plug-in does not hide the others
            click.echo(f"{name}: cannot be used: {error}{origin}")
            continue
        click.echo(f"{name}: {strategy_class.summary}{origin}")
        for param in strategy_class.params:
            kind = "flag" if param.type is bool else param.type.__name__
            default = "" if param.default is None else f", default {param.default}"
            click.echo(f"    {param.flag} ({kind}{default}): {param.help}")


@main.group("data")
def data_group() -> None:
    """Inspect market data sources."""


def data_options(command):
    """The source and its cut, shared by `data show` and `data check`."""
    for option in reversed((
        click.option("--data", "source", default="sample", show_default=True, help="sample, sample-long, yahoo, or a file or directory."),
        click.option("--ticker", help="One ticker (default: all in the source)."),
        click.option("--tickers", help="Several tickers, comma-separated."),
        click.option("--start", help="First date (YYYY-MM-DD)."),
        click.option("--end", help="Last date (YYYY-MM-DD)."),
    )):
        command = option(command)
    return command


@data_group.command("show")
@data_options
def data_show(source: str, ticker: str | None, tickers: str | None, start: str | None, end: str | None) -> None:
    """Date range, rows, gaps and adjustments found, per ticker."""
    from tradesim.market.data import load_market_data
    from tradesim.market.summary import describe

    if ticker and tickers:
        raise TradesimError("--ticker and --tickers: give one of them, not both")
    data = load_market_data(source, ticker or tickers, start, end)
    click.echo(describe(data))


@data_group.command("check")
@data_options
@click.option("--news", help="News file or directory: how many sessions it covers per ticker.")
@click.option("--test-start", help="First session of the test period, for news coverage (default: --start).")
def data_check(source: str, news: str | None, ticker: str | None, tickers: str | None, start: str | None, end: str | None, test_start: str | None) -> None:
    """Data quality before a backtest: null rows, missing bars, zero volume, jumps that look like
    unadjusted splits, and the news coverage per ticker. Exits 1 when loading refuses the data."""
    from tradesim.market.data import load_market_data
    from tradesim.market.quality import check_data, quality_table

    if ticker and tickers:
        raise TradesimError("--ticker and --tickers: give one of them, not both")
    data = load_market_data(source, ticker or tickers, start, end, news=news)
    click.echo(f"{source}: {len(data.tickers)} tickers, {len(data.sessions)} sessions ({data.sessions[0].date()}..{data.sessions[-1].date()})")
    click.echo(quality_table(check_data(data, test_start)))
    for note in data.notes:
        if note.startswith("WARNING"):
            click.echo(note)


@main.group("cache")
def cache_group() -> None:
    """Inspect or clear the language-model decision cache ($TRADESIM_HOME/llm-cache.sqlite)."""


@cache_group.command("stats")
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), help="Cache file (default $TRADESIM_HOME/llm-cache.sqlite).")
def cache_stats(cache_path: Path | None) -> None:
    """Entries, size and hits by model."""
    from tradesim.llm.cache import DecisionCache

    cache = DecisionCache(cache_path, mode="readonly")
    rows = cache.stats()
    click.echo(f"cache: {cache.path} ({cache.file_size() / 1e6:.1f} MB on disk)" if rows else f"cache: {cache.path} (empty)")
    if rows:
        width = max(len(row["model"]) for row in rows)
        click.echo(f"{'model':<{width}}  {'entries':>8}  {'stored MB':>9}  {'hits':>8}  {'misses':>8}")
        for row in rows:
            click.echo(f"{row['model']:<{width}}  {row['entries']:>8}  {row['bytes'] / 1e6:>9.2f}  {row['hits']:>8}  {row['misses']:>8}")


@cache_group.command("clear")
@click.option("--model", help="Only the entries of this model spec (as given to --router/--llm).")
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), help="Cache file (default $TRADESIM_HOME/llm-cache.sqlite).")
def cache_clear(model: str | None, cache_path: Path | None) -> None:
    """Delete cached model answers: all of them, or one model's."""
    from tradesim.llm.cache import DecisionCache

    deleted = DecisionCache(cache_path).clear(model)
    click.echo(f"deleted {deleted} entries" + (f" of {model}" if model else ""))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--date", "day", required=True, help="Decision date (YYYY-MM-DD).")
@click.option("--ticker", help="Ticker (needed when the run has several).")
def explain(run_dir: Path, day: str, ticker: str | None) -> None:
    """Show one decision: the prompt, the news used, what the router and experts said, the action."""
    from tradesim.runs import explain_decision

    click.echo(explain_decision(run_dir, day, ticker))


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
def compare(run_dirs: tuple[Path, ...]) -> None:
    """One metrics table across runs (e.g. LLMoE against its baselines)."""
    from tradesim.runs import compare_runs

    click.echo(compare_runs(run_dirs))


@main.command("trials")
@click.option("--study", help="A study's name, id or the start of its id (default: list the studies).")
@click.option("--pbo", is_flag=True, help="Also the probability of backtest overfitting of the study (CSCV).")
@click.option("--pbo-splits", type=int, default=16, show_default=True, help="Blocks the dates are cut into for CSCV (even).")
def trials_command(study: str | None, pbo: bool, pbo_splits: int) -> None:
    """The trial ledger ($TRADESIM_HOME/trials.sqlite): studies, or one study's trials with their
    Sharpe, interval and deflated Sharpe."""
    from tradesim.evidence.trials import studies_table, study_table

    if study is None and pbo:
        raise TradesimError("--pbo: name the study with --study (`tradesim trials` lists them)")
    click.echo(studies_table() if study is None else study_table(study, pbo_splits if pbo else None))


@main.command("sweep")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="The sweep's directory: cells/<id>/ run directories, results.parquet, sweep.json.")
@click.option("--list", "list_only", is_flag=True, help="Print one line per cell (its id and varied values) and run nothing.")
@click.option("--executor", "executor_name", type=click.Choice(("serial", "process", "ray")), default="process", show_default=True, help="Where cells run.")
@click.option("--workers", type=int, help="Processes, or CPUs of a local Ray (default: the cores of this machine).")
@click.option("--ray-address", help="Join this Ray cluster (e.g. 10.0.0.5:6379, after `ray start --head` there) instead of starting a local one.")
@click.option("--sort", default="sharpe", show_default=True, help="The metric the results table is sorted by (best first).")
@click.option("--top", type=int, help="Print only the best N cells (results.parquet holds all).")
@click.option("--prefetch", is_flag=True, help="First gather every cell's prompts and score them once per model, in batches; the cells then run as cache hits.")
def sweep_command(spec: Path, out: Path | None, list_only: bool, executor_name: str, workers: int | None, ray_address: str | None, sort: str,
                  top: int | None, prefetch: bool) -> None:
    """Run a grid of backtests from SPEC.toml ([base], [grid], [[zip]], [walk_forward]): one run
    directory per cell, resumable, and one results table whose deflated Sharpe and probability of
    backtest overfitting count every cell."""
    from tradesim.sweep.sweep import SORTABLE, list_cells, results_table, run_sweep

    if list_only:
        click.echo(list_cells(spec))
        return
    if out is None:
        raise TradesimError("--out: give the sweep's directory (a rerun with the same --out resumes it)")
    if sort not in SORTABLE:
        raise TradesimError(f"--sort {sort!r}: expected one of {', '.join(SORTABLE)}")
    if ray_address and executor_name != "ray":
        raise TradesimError("--ray-address: only with --executor ray")
    from tradesim.rundir import argv_of_process

    outcome = run_sweep(
        spec, out, executor_name=executor_name, workers=workers, ray_address=ray_address, argv=argv_of_process(), echo=click.echo, prefetch_prompts=prefetch
    )
    click.echo(results_table(outcome.results, outcome.summary, sort, top))
    click.echo(f"sweep directory: {out} (results.parquet, sweep.json, cells/)")
    failed = outcome.results[outcome.results["status"].str.startswith("failed")]
    if len(failed):
        raise TradesimError(f"{len(failed)} of {len(outcome.results)} cells failed (first: {failed.iloc[0]['cell']}: {failed.iloc[0]['status'].removeprefix('failed: ')}); a rerun retries them")


@main.command("probe")
@click.argument("spec")
@click.option("--ticker", help="One ticker.")
@click.option("--tickers", help="Several tickers, comma-separated (default: every ticker of the source).")
@click.option("--start", required=True, help="First session asked about (YYYY-MM-DD).")
@click.option("--end", required=True, help="Last session asked about (YYYY-MM-DD).")
@click.option("--data", default="sample", show_default=True, help="sample, sample-long, yahoo, or a CSV/Parquet file or directory: the answers' truth.")
@click.option("--prices/--no-prices", default=True, show_default=True, help="Also ask models that generate for each closing price.")
@click.option("--model-cutoff", "model_cutoffs", multiple=True, help="SPEC=YYYY-MM-DD: the model's stated training cutoff, shown beside the estimate.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda ... for local models.")
@click.option("--llm-cache", type=click.Choice(CACHE_MODES), default="readwrite", show_default=True, help="Decision cache mode.")
@click.option("--out", help="Where to write probe.csv, probe.json and probe.png (default runs/<UTC time>-probe-<model>/).")
def probe(spec: str, ticker: str | None, tickers: str | None, start: str, end: str, data: str, prices: bool,
          model_cutoffs: tuple[str, ...], device: str, llm_cache: str, out: str | None) -> None:
    """A memorization probe of model SPEC: with no market data in the prompt, ask for the direction
    of each ticker's close-to-close move on each session (and, for models that generate, its
    closing price); score the answers month by month against chance and estimate the model's
    effective training cutoff."""
    from datetime import datetime, timezone

    from tradesim.config import iso_date, model_cutoff_table
    from tradesim.evidence.probe import check_out, months_table, probe_model, write_probe
    from tradesim.rundir import safe_name

    if ticker and tickers:
        raise TradesimError("--ticker and --tickers: give one of them, not both")
    target = Path(out) if out else Path("runs") / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-probe-{safe_name(spec)[:40]}"
    check_out(target)  # before any work
    result = probe_model(
        spec, data, ticker or tickers, iso_date(start, "--start"), iso_date(end, "--end"), prices=prices,
        cutoffs=model_cutoff_table(list(model_cutoffs), "--model-cutoff"), device=device, llm_cache=llm_cache,
    )
    summary = result.summary
    write_probe(result, target, f"memorization probe of {spec} on {', '.join(summary['tickers'])}")
    click.echo(months_table(result.months))
    click.echo(
        f"{spec}: {summary['questions']} questions, accuracy {summary['accuracy']:.3f}; months above chance (Holm, 5%): "
        f"{summary['months_above_chance']} of {summary['months']}"
    )
    click.echo(f"estimated effective cutoff: {summary['estimated_cutoff'] or 'none found (accuracy never above chance)'}")
    click.echo(f"stated cutoff: {summary['stated_cutoff'] or 'unknown'} ({summary['stated_cutoff_source']})")
    if summary["asked_prices"]:
        error = summary.get("median_price_error")
        click.echo(f"closing prices: median error {'n/a (no number answered)' if error is None else f'{error:.1%}'}")
    elif prices:
        click.echo(f"closing prices: not asked ({spec} cannot generate text)")
    click.echo(f"probe: {target}")


@main.command("evaluate")
@click.argument("model")
@click.option("--task", default="all", show_default=True, help="fpb, fiqa-sa, fomc, acl18 (comma-separated) or all.")
@click.option("--shared", default=SHARED_DEFAULT, show_default=True, help="Folder holding sentiment/ and stocknet/.")
@click.option("--baseline-steps", type=click.IntRange(0), default=200, show_default=True, help="Steps of the fine-tuned single-model baseline (0: leave it out).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda ...")
@click.option("--llm-cache", type=click.Choice(CACHE_MODES), default="readwrite", show_default=True, help="Decision cache mode (model specs).")
@click.option("--out", help="Where to write evaluation.json, table.txt and predictions.parquet (default runs/<UTC time>-evaluate-<model>/).")
def evaluate(model: str, task: str, shared: str, baseline_steps: int, device: str, llm_cache: str, out: str | None) -> None:
    """Evaluate MODEL on FPB, FiQA-SA, FOMC and ACL18. MODEL is a model spec (hf:..., openai:...,
    smollm2, minilm) scored zero-shot over the label words, or what an installed evaluator knows:
    `finteam` (the default build, built first if needed) or a build directory from `tradesim
    finteam build`."""
    from datetime import datetime, timezone

    from tradesim.evaluation.harness import evaluate_spec, resolve_tasks, results_table, write_evaluation
    from tradesim.evaluation.tasks import shared_directory
    from tradesim.plugins import evaluators
    from tradesim.rundir import check_run_dir
    from tradesim.strategy import Runtime

    tasks = resolve_tasks(task)
    root = shared_directory(shared)
    claimed = [evaluator for evaluator in evaluators().values() if evaluator.claims(model)]
    if not claimed and Path(model).is_dir():
        raise TradesimError(f"evaluate {model}: a directory no installed evaluator recognises (evaluators: {', '.join(evaluators()) or 'none'})")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    label = claimed[0].name if claimed else model.replace("/", "_").replace(":", "_")[:40]
    target = Path(out) if out else Path("runs") / f"{stamp}-evaluate-{label}"
    check_run_dir(target, False)
    predictions = None
    if claimed:
        results, predictions, meta = claimed[0].evaluate(model, root, tasks, baseline_steps=baseline_steps, device=device, echo=click.echo)
    else:
        results, described = evaluate_spec(model, root, tasks, Runtime(device=device, llm_cache=llm_cache), echo=click.echo)
        meta = {"model": model, "described": described}
    write_evaluation(target, results, predictions, {**meta, "tasks": list(tasks)})
    click.echo(results_table(results))
    click.echo(f"evaluation: {target}")


@main.group("paper")
def paper_group() -> None:
    """Persistent paper accounts run night after night ($TRADESIM_HOME/paper/<name>/)."""


NOW_HELP = "The current time (ISO; New York time unless a zone is given). Default: the clock."


@paper_group.command("init")
@click.argument("name")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path), help="TOML run configuration (as for `tradesim backtest --config`).")
@click.option("--inception", help="First session the account trades from (YYYY-MM-DD; default: the next session to close).")
@click.option("--capital", type=float, help="Starting capital (default: the config's, else 100000).")
@click.option("--dividends", type=click.Choice(["reinvest", "cash"]), help="Reinvest dividends (as adjusted prices assume; the sim default) or credit them as cash (a broker's only way).")
@click.option("--broker", type=click.Choice(["sim", "alpaca"]), default="sim", show_default=True, help="Where orders fill: the simulator (next bar, as the backtest) or Alpaca's paper endpoint (keys from APCA_API_KEY_ID / APCA_API_SECRET_KEY).")
@click.option("--order-timing", type=click.Choice(["auction", "day"]), help="Broker accounts: market-on-open orders in whole shares (auction, the default; sent 19:00-09:28 New York time) or fractional day orders.")
@click.option("--now", help=NOW_HELP)
def paper_init(name: str, config_path: Path, inception: str | None, capital: float | None, dividends: str | None, broker: str, order_timing: str | None, now: str | None) -> None:
    """Create an account: fit the strategy once on the data before the inception and store it."""
    from tradesim.plugins import get_strategy
    from tradesim.config import read_toml, resolve
    from tradesim.paper.account import init_account
    from tradesim.paper.calendar import parse_now

    file_values = read_toml(config_path)
    config = resolve(file_values, {}, origin=str(config_path))
    config = dataclasses.replace(config, params=get_strategy(config.strategy).resolve_params(config.params))
    made = init_account(name, config, inception=inception, capital=capital, dividends=dividends, now=parse_now(now), broker=broker, order_timing=order_timing, progress=True)
    click.echo(
        f"paper account {name}: {config.strategy} on {', '.join(made['config']['tickers'])}, capital {made['capital']:,.2f}, "
        f"fills {made['fill']}, dividends {made['dividends']}; fitted on data through {made['fitted_through']}; "
        f"first session {made['inception']}; fingerprint {made['fingerprint']}"
    )
    if made.get("broker"):
        click.echo(f"broker {made['broker']}: paper account {made['broker_account']}, orders {made['order_timing']} ({'market-on-open, whole shares' if made['order_timing'] == 'auction' else 'day, fractional'})")
    for note in made["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"account directory: {made['directory']}")


@paper_group.command("run")
@click.argument("name")
@click.option("--now", help=NOW_HELP)
@click.option("--max-catch-up", type=click.IntRange(1), default=5, show_default=True, help="Process at most this many closed sessions in one run.")
@click.option("--accept-change", help="Go on although what decides changed (code, model, template): starts a new epoch with this reason.")
@click.option("--notify-cmd", help="Shell command that receives a JSON summary of the run on stdin (also on refusals).")
def paper_run(name: str, now: str | None, max_catch_up: int, accept_change: str | None, notify_cmd: str | None) -> None:
    """Process every closed session since the last one: fills, marks, tomorrow's orders.

    Exit 0: done (or nothing to do); 75: try later (session not closed, bar missing, another run
    busy); 2: refused until a person looks (restated bar, unmatched jump, changed fingerprint,
    corrupt ledger)."""
    from tradesim.paper.account import notify, run_account
    from tradesim.paper.calendar import parse_now

    try:
        summary = run_account(name, now=parse_now(now), max_catch_up=max_catch_up, accept_change=accept_change, progress=False)
    except TradesimError as error:
        if notify_cmd:
            problem = notify(notify_cmd, {"account": name, "status": "retry" if error.exit_code == 75 else "refused", "exit_code": error.exit_code, "message": str(error)})
            if problem:
                click.echo(f"warning: {problem}", err=True)
        raise
    for message in summary.messages:
        click.echo(message)
    for session in summary.processed:
        click.echo(f"processed {session}" + (" (late: decided after the next session had opened)" if session in summary.late else ""))
    if summary.processed:
        click.echo(f"equity {summary.equity:,.2f} (benchmark {summary.benchmark:,.2f})")
        for order in summary.orders:
            click.echo(f"order {order['id']}: {order['ticker']} at {order['fill_session']}: {order['reason']}")
    if summary.remaining:
        click.echo(f"{summary.remaining} more closed sessions are due: run again (--max-catch-up {max_catch_up})")
    if notify_cmd:
        problem = notify(notify_cmd, dataclasses.asdict(summary))
        if problem:
            click.echo(f"warning: {problem}", err=True)


@paper_group.command("status")
@click.argument("name")
@click.option("--now", help=NOW_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def paper_status(name: str, now: str | None, as_json: bool) -> None:
    """Last processed and next due session, positions, cash, equity, orders, fingerprint, data events."""
    import json

    from tradesim.paper.calendar import parse_now
    from tradesim.paper.reading import status_of

    status = status_of(name, parse_now(now))
    if as_json:
        click.echo(json.dumps(status, indent=2, default=str))
        return
    for key in ("account", "strategy", "tickers", "inception", "fill", "dividends", "last_processed", "next_due", "sessions_due_now", "cash", "equity", "benchmark_equity", "epoch", "fingerprint"):
        value = status[key]
        click.echo(f"{key.replace('_', ' ')}: {', '.join(value) if isinstance(value, list) else (f'{value:,.2f}' if isinstance(value, float) else value)}")
    for position in status["positions"]:
        click.echo(f"position {position['ticker']}: {position['shares']:,.6f} shares, {position['value']:,.2f}")
    for order in status["pending_orders"]:
        click.echo(f"order {order['id']}: {order['ticker']} at {order['fill_session']}: {order['reason']}")
    for event in status["data_events"]:
        click.echo(f"data event {event['id']} ({event['status']}): {event['detail']}")
    broker = status["broker"]
    if broker and "problem" in broker:
        click.echo(f"broker {broker['broker']}: not reached: {broker['problem']}")
    elif broker:
        click.echo(f"broker {broker['broker']} account {broker['broker_account']} (orders {broker['order_timing']}; its clock {broker['clock']}): cash {broker['cash']:,.2f}, equity {broker['equity']:,.2f}")
        for ticker, shares in sorted(broker["positions"].items()):
            click.echo(f"broker position {ticker}: {shares:,.6f} shares")
        for ticker, shares in sorted(broker["outside_positions"].items()):
            click.echo(f"held at the broker, not the account's: {ticker} {shares:+,.6f}")
        click.echo("drift: " + (", ".join(f"{t} {d:+g}" for t, d in broker["drift"].items()) + " (broker minus account; orders filled since the last night show here too)" if broker["drift"] else "none"))
        for order in broker["orders_since_last_session"]:
            filled = f", {order['filled_qty']:g} filled at {order['filled_avg_price']:.4f}" if order["filled_qty"] else ""
            whose = "" if order["this_account"] else " (not this account's)"
            click.echo(f"broker order {order['client_id']}{whose}: {order['side']} {order['qty']:g} {order['ticker']} ({order['time_in_force']}) {order['status']}{filled}")
        for order in status["broker_orders"]:
            if order["state"] in ("unknown", "pending", "rejected", "not_sent"):
                click.echo(f"ledger order {order['client_id']}: {order['side']} {order['qty']:g} {order['ticker']} {order['state']}" + (f": {order['reason']}" if order["reason"] else ""))
    if status["crashed_run"]:
        click.echo(f"a previous run stopped without finishing (started {status['crashed_run']['started']}); the next run redoes its unfinished session")


@paper_group.command("orders")
@click.argument("name")
@click.option("--csv", "as_csv", is_flag=True, help="Print the orders as CSV.")
def paper_orders(name: str, as_csv: bool) -> None:
    """Tomorrow's orders: target weight per ticker, with the reason for each."""
    from tradesim.paper.reading import open_account, pending_orders

    ledger = open_account(name)
    try:
        orders = pending_orders(ledger)
    finally:
        ledger.close()
    click.echo(orders.to_csv(index=False).rstrip("\n") if as_csv else (orders.to_string(index=False) if len(orders) else "no orders (no session processed yet)"))


@paper_group.command("report")
@click.argument("name")
@click.option("--backtest/--no-backtest", default=True, show_default=True, help="Also backtest the same sessions and draw it beside the account.")
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the HTML page (default: report.html in the account directory).")
def paper_report(name: str, backtest: bool, out: Path | None) -> None:
    """An HTML page: paper equity against the backtest of the same sessions and the benchmark;
    the last night's fills, corporate actions, positions and tomorrow's orders."""
    from tradesim.paper.reading import backtest_equity, open_account
    from tradesim.paper.ledger import write_atomically
    from tradesim.paper.report import account_report

    ledger = open_account(name)
    try:
        compared = backtest_equity(ledger) if backtest and ledger.last_session() else None
        target = out or ledger.directory / "report.html"
        write_atomically(Path(target), account_report(ledger, compared))
    finally:
        ledger.close()
    if compared is not None:
        click.echo(f"backtest of the same sessions ends at {compared.iloc[-1]:,.2f}")
    click.echo(f"report: {target}")


@paper_group.command("verify")
@click.argument("name")
def paper_verify(name: str) -> None:
    """Recompute positions, cash and equity from capital, fills and corporate actions; check the hash chain."""
    from tradesim.paper.account import PaperRefusal
    from tradesim.paper.reading import is_broker_account, open_account, verify_account

    ledger = open_account(name)
    try:
        problems = verify_account(ledger)
        sessions = len(ledger.query("SELECT session FROM sessions"))
        if is_broker_account(ledger) and not problems:
            _echo_broker_comparison(ledger)
    finally:
        ledger.close()
    if problems:
        raise PaperRefusal(f"paper account {name}: {len(problems)} problems, first: {problems[0]}")
    click.echo(f"paper account {name}: {sessions} sessions verified (positions, cash, equity, hash chain)")


def _echo_broker_comparison(ledger) -> None:
    """A broker account's fills against the simulator's, per trade and in total, and its tracking
    difference to the backtest of the same sessions."""
    from tradesim.paper.reading import backtest_equity, fill_comparison, fill_totals, tracking_frame, tracking_totals

    comparison = fill_comparison(ledger)
    if comparison.empty:
        click.echo("broker fills: none yet")
        return
    shown = comparison.drop(columns="client_id").assign(date=comparison["date"].dt.date)
    click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:,.4f}"))
    totals = fill_totals(comparison)
    click.echo(
        f"broker fills: {totals['fills']}, {totals['traded_at_open']:,.2f} traded at the open; slippage against the open {totals['slippage_bps']:+.2f} bps "
        f"({totals['cost_vs_open']:+,.2f}); against the simulator's fills (its slippage and costs) {totals['cost_vs_simulated']:+,.2f}"
    )
    low, high = totals["slippage_bps_per_trade_interval"]
    click.echo(f"per trade: mean slippage {totals['slippage_bps_per_trade']:+.2f} bps, 95% interval [{low:+.2f}, {high:+.2f}] over {totals['fills']} fills")
    tracked = tracking_totals(tracking_frame(ledger, backtest_equity(ledger)))
    if tracked["sessions"]:
        click.echo(
            f"tracking: the account ends {tracked['difference']:+,.2f} ({tracked['difference_pct']:+.3f}%) from the backtest of the same {tracked['sessions']} sessions "
            f"(whole shares, the broker's prices, rejections, cash); tracking error {tracked['tracking_error_annualized_pct']:.2f}% a year"
        )


@paper_group.command("list")
def paper_list() -> None:
    """The accounts under $TRADESIM_HOME/paper."""
    from tradesim.paper.reading import list_accounts

    accounts = list_accounts()
    if not accounts:
        click.echo("no paper accounts")
    for account in accounts:
        if "problem" in account:
            click.echo(f"{account['account']}: {account['problem']}")
        else:
            click.echo(f"{account['account']}: {account['strategy']} on {account['tickers']}, last processed {account['last_processed'] or 'none'}, equity {account['equity']:,.2f}")


@paper_group.command("resolve")
@click.argument("name")
@click.argument("event_id")
@click.option("--accept", "decision", flag_value="accepted", help="The source is right (a real restatement or move): go on.")
@click.option("--ignore", "decision", flag_value="ignored", help="Go on regardless (a known bad print that the account did not use).")
@click.option("--broker", "decision", flag_value="broker", help="Drift: the broker's positions are right; the account takes them.")
@click.option("--account", "decision", flag_value="account", help="Drift: the account's positions are right; the difference is held at the broker but is not the account's.")
@click.option("--reason", required=True, help="Why: recorded with the event.")
def paper_resolve(name: str, event_id: str, decision: str | None, reason: str) -> None:
    """Accept or ignore a recorded data event, or resolve a broker account's drift, so that runs go on."""
    from tradesim.paper.account import resolve_event

    if decision is None:
        raise TradesimError("--accept or --ignore (a data event), --broker or --account (a drift): say which")
    resolve_event(name, event_id, decision, reason)
    click.echo(f"data event {event_id}: {decision} ({reason})")


if __name__ == "__main__":
    main()
