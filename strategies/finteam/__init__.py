"""FinTeamExperts (Yu & Tiwari, 2024): role experts pre-trained on role corpora, a gated team tuned on
financial tasks, and the strategy that trades on the team's predictions.

* `strategy`: the `finteam` strategy (registered in the entry-point group `tradesim.strategies`).
* `corpora`: the role corpora (macro, micro, quant) read from `../shared/data/corpora` layout,
  cut off at a date and decontaminated against every benchmark sentence.
* `backbone`: one interface over an encoder (masked-LM loss) and a causal LM (next-token loss).
* `pretrain`: stage 1, continued pre-training of each expert, with the held-out loss table.
* `team`: the gate (hard within a role, soft across roles) and the head, stage 2.
* `build`: `tradesim finteam build` (`commands`, group `tradesim.commands`).
* `evaluate`: a build in `tradesim evaluate` (group `tradesim.evaluators`), against its baselines.

The benchmarks' splits (FPB, FiQA-SA, FOMC, ACL18), their price-table text and the harness that
scores any model on them are tradesim's (`tradesim.evaluation`).
"""
