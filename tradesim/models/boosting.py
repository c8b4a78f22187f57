"""Gradient-boosted trees (LightGBM) over factor tables: a score per row and each feature's
contribution to it (LightGBM's `pred_contrib`, TreeSHAP values in log-odds).

A booster is trained on chronological rows (the last fifth held out for early stopping), seeded and
deterministic, and stored under `$TRADESIM_HOME/models/<content hash>/model.txt` (the hash: the
rows, labels, feature names, parameters, LightGBM's version), loaded when the same inputs come
again. LightGBM is the `tradesim[lightgbm]` extra.
"""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Any, Sequence

import numpy as np

from tradesim.errors import TradesimError
from tradesim.models.training import content_id, model_store, save_atomically

BOOSTING_CODE_VERSION = 1
PARAMETERS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,  # bit-for-bit reproducible on any machine
}


def require_lightgbm(flag: str):
    if importlib.util.find_spec("lightgbm") is None:
        raise TradesimError(f"{flag}: needs the package lightgbm (pip install 'tradesim[lightgbm]')")
    import lightgbm

    return lightgbm


class Booster:
    """A trained LightGBM booster: `predict` gives P(label 1), `contributions` each feature's share."""

    def __init__(self, booster, features: list[str], record: dict[str, Any]):
        self.booster = booster
        self.features = features
        self.record = record

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.asarray(rows, dtype=np.float64)), dtype=float)

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """rows x features: each feature's contribution (log-odds) to the row's score; the bias dropped."""
        values = np.asarray(self.booster.predict(np.asarray(rows, dtype=np.float64), pred_contrib=True), dtype=float)
        return values[:, : len(self.features)]

    def __getstate__(self):
        return {"model": self.booster.model_to_string(), "features": self.features, "record": self.record}

    def __setstate__(self, state):
        lightgbm = require_lightgbm("a stored LightGBM model")
        self.booster = lightgbm.Booster(model_str=state["model"])
        self.features, self.record = state["features"], state["record"]


def fit_or_load_booster(
    rows: np.ndarray, labels: np.ndarray, features: Sequence[str], *, seed: int, rounds: int, about: dict[str, Any], flag: str
) -> Booster:
    """A binary LightGBM classifier on chronological `rows`, or the one stored before under the same hash."""
    lightgbm = require_lightgbm(flag)
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    labels = np.ascontiguousarray(labels, dtype=np.float64)
    parameters = {**PARAMETERS, "seed": seed, "min_data_in_leaf": max(5, min(PARAMETERS["min_data_in_leaf"], len(rows) // 20))}
    head = {"kind": "lightgbm", "parameters": parameters, "rounds": rounds, "features": list(features), "lightgbm": lightgbm.__version__,
            "code_version": BOOSTING_CODE_VERSION, "about": about}
    model_id = content_id(head, rows, labels)
    store = model_store(model_id)
    if (store / "model.txt").is_file():
        manifest = json.loads((store / "model.json").read_text())
        booster = lightgbm.Booster(model_file=str(store / "model.txt"))
        return Booster(booster, list(features), {**manifest["training"], "id": model_id, "path": str(store), "loaded": True})
    started = time.perf_counter()
    held = max(1, len(rows) // 5)
    train = lightgbm.Dataset(rows[:-held], labels[:-held], feature_name=list(features), free_raw_data=False)
    check = lightgbm.Dataset(rows[-held:], labels[-held:], reference=train)
    booster = lightgbm.train(
        parameters, train, num_boost_round=rounds, valid_sets=[check],
        callbacks=[lightgbm.early_stopping(max(10, rounds // 10), verbose=False)],
    )
    training = {"rows": int(len(rows)), "best_iteration": int(booster.best_iteration), "seconds": round(time.perf_counter() - started, 2),
                "validation_loss": round(float(booster.best_score["valid_0"]["binary_logloss"]), 6)}
    booster = lightgbm.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))

    def write(staging):
        booster.save_model(str(staging / "model.txt"))
        (staging / "model.json").write_text(json.dumps({**head, "id": model_id, "training": training}, indent=2, default=str) + "\n")

    save_atomically(store, write)
    return Booster(booster, list(features), {**training, "id": model_id, "path": str(store), "loaded": False})
