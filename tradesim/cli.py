"""The `tradesim` command: parse, call the library, print. Heavy imports happen inside commands."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from tradesim.config import CACHE_MODES, FILL_MODES
from tradesim.errors import TradesimError


class TradesimGroup(click.Group):
    """Turns input errors into one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TradesimError as error:
            raise click.ClickException(str(error)) from None
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
@click.option("--risk-free", type=float, help="Annual risk-free rate for Sharpe and Sortino (default 0).")
@click.option("--cutoff", help="Decision cutoff for news, HH:MM America/New_York (default 16:00).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--device", help="auto (default: CUDA when present), cpu, cuda, cuda:1 ... for models.")
@click.option("--llm-cache", type=click.Choice(CACHE_MODES), help="Language-model cache mode (default readwrite).")
@click.option("--out", help="Run directory (default runs/<UTC time>-<strategy>-<tickers>/).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out directory.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML file holding any of these options.")
@click.argument("strategy_args", nargs=-1, type=click.UNPROCESSED)
def backtest(config_path: Path | None, overwrite: bool, ticker: str | None, tickers: str | None, strategy_args, **options) -> None:
    """Backtest a strategy and write a run directory.

    Strategy parameters follow as their own flags, e.g. `--lookback 60` for momentum;
    `tradesim strategies` lists them.
    """
    from tradesim.config import read_toml, resolve

    if ticker and tickers:
        raise TradesimError("--ticker and --tickers: give one of them, not both")
    file_values = read_toml(config_path) if config_path else {}
    options["tickers"] = ticker or tickers
    strategy_name = options["strategy"] or file_values.get("strategy")
    if not strategy_name:
        raise TradesimError("--strategy: no strategy given (see `tradesim strategies`)")

    from strategies import get_strategy

    strategy_class = get_strategy(str(strategy_name))
    options["params"] = parse_strategy_args(strategy_args, strategy_class)
    config = resolve(file_values, options, origin=str(config_path) if config_path else "options")
    config = dataclasses.replace(config, params=strategy_class.resolve_params(config.params))

    from tradesim.backtest import run_backtest
    from tradesim.report import argv_of_process, check_run_dir, default_run_dir, metrics_table, write_run_directory

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
    click.echo(f"run directory: {out}")


@main.command("strategies")
def list_strategies() -> None:
    """List the strategies with a one-line description and their parameters."""
    from strategies import REGISTRY

    for name, strategy_class in REGISTRY.items():
        click.echo(f"{name}: {strategy_class.summary}")
        for param in strategy_class.params:
            kind = "flag" if param.type is bool else param.type.__name__
            default = "" if param.default is None else f", default {param.default}"
            click.echo(f"    {param.flag} ({kind}{default}): {param.help}")


@main.group("data")
def data_group() -> None:
    """Inspect market data sources."""


@data_group.command("show")
@click.option("--data", "source", default="sample", show_default=True, help="sample, sample-long, yahoo, or a file or directory.")
@click.option("--ticker", help="One ticker (default: all in the source).")
@click.option("--tickers", help="Several tickers, comma-separated.")
@click.option("--start", help="First date (YYYY-MM-DD).")
@click.option("--end", help="Last date (YYYY-MM-DD).")
def data_show(source: str, ticker: str | None, tickers: str | None, start: str | None, end: str | None) -> None:
    """Date range, rows, gaps and adjustments found, per ticker."""
    from tradesim.market.data import load_market_data
    from tradesim.market.summary import describe

    if ticker and tickers:
        raise TradesimError("--ticker and --tickers: give one of them, not both")
    data = load_market_data(source, ticker or tickers, start, end)
    click.echo(describe(data))


@main.group("cache")
def cache_group() -> None:
    """Inspect or clear the language-model decision cache ($TRADESIM_HOME/llm-cache.sqlite)."""


@cache_group.command("stats")
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), help="Cache file (default $TRADESIM_HOME/llm-cache.sqlite).")
def cache_stats(cache_path: Path | None) -> None:
    """Entries, size and hits by model."""
    from tradesim.llm.cache import DecisionCache

    cache = DecisionCache(cache_path)
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


SHARED_DEFAULT = "../shared/data"


def _shared(path: str) -> Path:
    shared = Path(path)
    if not shared.is_dir():
        raise TradesimError(f"--shared {path}: no such directory (the layout of ../shared/data: corpora/, sentiment/, stocknet/, sp500/)")
    return shared


@main.group("finteam")
def finteam_group() -> None:
    """FinTeamExperts: build the role experts and the gated team."""


@finteam_group.command("build")
@click.option("--shared", default=SHARED_DEFAULT, show_default=True, help="Folder holding corpora/, sentiment/, stocknet/ and sp500/.")
@click.option("--backbone", default="minilm", show_default=True, help="minilm (encoder, masked-LM), smollm2 or hf:<id or dir> (causal: next-token).")
@click.option("--cutoff", default="2015-08-01", show_default=True, help="Only text and price rows public before this date are used.")
@click.option("--steps", type=click.IntRange(1), default=200, show_default=True, help="Stage-1 steps per expert.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Stage-1 blocks per step.")
@click.option("--block-length", type=click.IntRange(8), default=128, show_default=True, help="Stage-1 tokens per block.")
@click.option("--learning-rate", type=float, default=2e-4, show_default=True, help="Stage-1 learning rate.")
@click.option("--lora-rank", type=click.IntRange(0), default=0, show_default=True, help="Causal backbones: LoRA rank for stage 1 (0: every weight).")
@click.option("--team-steps", type=click.IntRange(1), default=3000, show_default=True, help="Stage-2 steps (one batch of one task each).")
@click.option("--balance", type=float, default=0.1, show_default=True, help="Weight of the batch-mean usage entropy (keeps experts in use).")
@click.option("--sharpness", type=float, default=0.0, show_default=True, help="Weight of the per-sample routing entropy penalty (keeps routing decisive).")
@click.option("--unfreeze-top", type=click.IntRange(0), default=0, show_default=True, help="Stage 2 also fine-tunes each expert's top N layers (BERT-like encoders; 0: frozen features).")
@click.option("--ablations/--no-ablations", default=True, show_default=True, help="Also train each team without each role (four times the stage-2 work).")
@click.option("--tasks", default="all", show_default=True, help="Tasks the team is tuned on: fpb, fiqa-sa, fomc, acl18 (comma-separated) or all.")
@click.option("--acl18-train-limit", type=click.IntRange(2), default=1200, show_default=True, help="ACL18 training examples sampled (stratified).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda ...")
def finteam_build(shared: str, backbone: str, cutoff: str, tasks: str, device: str, **values) -> None:
    """Stage 1 (each expert pre-trained on its role corpus) and stage 2 (the gated team), stored
    under $TRADESIM_HOME/models/; the same inputs load instead of training."""
    import time

    import pandas as pd

    from tradesim.finteam.build import BuildSettings, build, loss_table_text, with_overrides
    from tradesim.finteam.evaluate import resolve_tasks

    try:
        pd.Timestamp(cutoff)
    except ValueError:
        raise TradesimError(f"--cutoff {cutoff!r}: expected a date YYYY-MM-DD") from None
    started = time.perf_counter()
    settings = with_overrides(BuildSettings(), backbone=backbone, cutoff=str(pd.Timestamp(cutoff).date()), tasks=resolve_tasks(tasks), **{
        (f"team_{k}" if k in ("balance", "sharpness", "unfreeze_top") else k): v for k, v in values.items()
    })
    result = build(settings, _shared(shared), device=device, echo=click.echo)
    click.echo(loss_table_text(result.meta))
    click.echo(f"team: {result.directory} (cut-off {result.meta['cutoff']}, {time.perf_counter() - started:.0f} s)")


@main.command("evaluate")
@click.argument("model")
@click.option("--task", default="all", show_default=True, help="fpb, fiqa-sa, fomc, acl18 (comma-separated) or all.")
@click.option("--shared", default=SHARED_DEFAULT, show_default=True, help="Folder holding sentiment/ and stocknet/.")
@click.option("--baseline-steps", type=click.IntRange(0), default=200, show_default=True, help="Steps of the fine-tuned single-model baseline (0: leave it out).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda ...")
@click.option("--llm-cache", type=click.Choice(CACHE_MODES), default="readwrite", show_default=True, help="Decision cache mode (model specs).")
@click.option("--out", help="Where to write evaluation.json, table.txt and predictions.parquet (default runs/<UTC time>-evaluate-<model>/).")
def evaluate(model: str, task: str, shared: str, baseline_steps: int, device: str, llm_cache: str, out: str | None) -> None:
    """Evaluate MODEL on FPB, FiQA-SA, FOMC and ACL18. MODEL is `finteam` (the default build,
    built first if needed), a build directory from `tradesim finteam build`, or a model spec
    (hf:..., openai:..., smollm2, minilm) scored zero-shot over the label words."""
    from datetime import datetime, timezone

    from tradesim.finteam.evaluate import FineTuneSettings, evaluate_build, evaluate_spec, resolve_tasks, results_table, write_evaluation
    from tradesim.report import check_run_dir

    tasks = resolve_tasks(task)
    root = _shared(shared)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    label = "finteam" if model == "finteam" or Path(model).is_dir() else model.replace("/", "_").replace(":", "_")[:40]
    target = Path(out) if out else Path("runs") / f"{stamp}-evaluate-{label}"
    check_run_dir(target, False)
    predictions = None
    if model == "finteam" or Path(model).is_dir():
        from tradesim.finteam.build import Build, BuildSettings, build

        built = build(BuildSettings(), root, device=device, echo=click.echo) if model == "finteam" else Build.load(Path(model))
        fine_tune = FineTuneSettings(steps=baseline_steps)
        results, predictions = evaluate_build(built, root, tasks, fine_tune, device=device, echo=click.echo)
        meta = {"model": str(built.directory), "cutoff": built.meta["cutoff"], "build": built.meta["content_hash"], "baseline_steps": baseline_steps}
    else:
        from tradesim.strategy import Runtime

        results, described = evaluate_spec(model, root, tasks, Runtime(device=device, llm_cache=llm_cache), echo=click.echo)
        meta = {"model": model, "described": described}
    write_evaluation(target, results, predictions, {**meta, "tasks": list(tasks)})
    click.echo(results_table(results))
    click.echo(f"evaluation: {target}")
