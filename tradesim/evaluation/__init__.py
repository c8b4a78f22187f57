"""The evaluation harness for financial text tasks: FPB, FiQA-SA, FOMC and ACL18 with their
standard splits (`tasks`), the price-table text ACL18 and FLARE use (`flare`), text utilities
(`text`), and scoring any model spec on them against simple baselines (`harness`)."""
