"""FinTeamExperts (Yu & Tiwari, 2024): role experts pre-trained on role corpora, a gated team tuned on
financial tasks.

* `corpora`: the role corpora (macro, micro, quant) read from `../shared/data/corpora` layout,
  cut off at a date and decontaminated against every benchmark sentence.
* `backbone`: one interface over an encoder (masked-LM loss) and a causal LM (next-token loss).
* `pretrain`: stage 1, continued pre-training of each expert, with the held-out loss table.
* `team`: the gate (hard within a role, soft across roles) and the head, stage 2.
* `tasks`: FPB, FiQA-SA, FOMC and ACL18 with their standard splits.
* `build` and `evaluate`: the `tradesim finteam build` and `tradesim evaluate` commands.
"""
