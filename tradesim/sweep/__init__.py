"""Scale around one run: walk-forward folds (`folds`), sweep specs and their cells (`spec`), the
executors that run cells serially, on processes or on a Ray cluster (`executors`), and the sweep
itself with its results table (`sweep`)."""
