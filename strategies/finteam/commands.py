"""`tradesim finteam ...`: the commands FinTeamExperts adds to the CLI (entry-point group
`tradesim.commands`)."""

from __future__ import annotations

import time

import click
import pandas as pd

from strategies.finteam.build import BuildSettings, build, loss_table_text, with_overrides
from tradesim.config import SHARED_DEFAULT
from tradesim.errors import TradesimError
from tradesim.evaluation.harness import resolve_tasks
from tradesim.evaluation.tasks import shared_directory


@click.group("finteam")
def finteam() -> None:
    """FinTeamExperts: build the role experts and the gated team."""


@finteam.command("build")
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
    try:
        pd.Timestamp(cutoff)
    except ValueError:
        raise TradesimError(f"--cutoff {cutoff!r}: expected a date YYYY-MM-DD") from None
    started = time.perf_counter()
    settings = with_overrides(BuildSettings(), backbone=backbone, cutoff=str(pd.Timestamp(cutoff).date()), tasks=resolve_tasks(tasks), **{
        (f"team_{k}" if k in ("balance", "sharpness", "unfreeze_top") else k): v for k, v in values.items()
    })
    result = build(settings, shared_directory(shared), device=device, echo=click.echo)
    click.echo(loss_table_text(result.meta))
    click.echo(f"team: {result.directory} (cut-off {result.meta['cutoff']}, {time.perf_counter() - started:.0f} s)")
