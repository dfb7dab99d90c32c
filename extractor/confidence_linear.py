"""The confidence model's arithmetic without scikit-learn at run time.

The trained estimator (``model.skops``) is a sigmoid-calibrated (5-fold) pipeline of
DictVectorizer > MaxAbsScaler > LogisticRegression. Its probability is the mean over
the folds of ``1 / (1 + exp(a * f(x) + b))`` with ``f`` the fold's linear decision
function. ``dermcode train`` writes those numbers to ``linear.json`` beside the skops
file (checksummed in the manifest); coding a note then needs no import of
scikit-learn or skops, which cost 1.4 s of every ``dermcode code`` start.
``tests/test_confidence.py`` checks the two agree to 1e-9 on the training rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

LINEAR_FILE = "linear.json"


def _key_value(key: str, value: Any) -> tuple[str, float] | None:
    """How DictVectorizer turns one item into a (feature, value) pair."""
    if isinstance(value, str):
        return f"{key}={value}", 1.0
    if value is None:
        return None
    return key, float(value)


def export(estimator: Any) -> dict[str, Any]:
    """The folds' vocabularies, scales, weights and Platt parameters, as plain data."""
    folds = []
    for cc in estimator.calibrated_classifiers_:
        pipe = cc.estimator
        vec, scale, lr = (
            pipe.named_steps["vectorize"],
            pipe.named_steps["scale"],
            pipe.named_steps["logreg"],
        )
        cal = cc.calibrators[0]
        folds.append(
            {
                "vocabulary": {k: int(v) for k, v in vec.vocabulary_.items()},
                "scale": [float(x) for x in scale.scale_],
                "coef": [float(x) for x in lr.coef_[0]],
                "intercept": float(lr.intercept_[0]),
                "a": float(cal.a_),
                "b": float(cal.b_),
            }
        )
    classes = [int(c) for c in estimator.classes_]
    return {"classes": classes, "folds": folds}


class LinearConfidence:
    """``predict`` gives the same probabilities as the skops estimator, from linear.json."""

    def __init__(self, data: dict[str, Any]) -> None:
        folds = data["folds"]
        self.positive_is_second = data["classes"] == [0, 1]
        n = len(folds)
        # feature -> its weight in each fold (coef / scale), so a row is scored in one pass
        weights: dict[str, list[float]] = {}
        for k, fold in enumerate(folds):
            scale, coef = fold["scale"], fold["coef"]
            for name, j in fold["vocabulary"].items():
                weights.setdefault(name, [0.0] * n)[k] = coef[j] / (scale[j] or 1.0)
        self.weights = weights
        self.intercepts = [fold["intercept"] for fold in folds]
        self.platt = [(fold["a"], fold["b"]) for fold in folds]

    @classmethod
    def from_file(cls, path: Path) -> LinearConfidence:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def _proba(self, row: dict[str, Any]) -> float:
        f = list(self.intercepts)
        weights = self.weights
        for key, value in row.items():
            kv = _key_value(key, value)
            if kv is None:
                continue
            w = weights.get(kv[0])
            if w is not None:
                x = kv[1]
                for k, wk in enumerate(w):
                    f[k] += wk * x
        total = 0.0
        for fk, (a, b) in zip(f, self.platt, strict=True):
            z = a * fk + b
            p = 1.0 / (1.0 + math.exp(z)) if z > -700 else 1.0
            total += p if self.positive_is_second else 1.0 - p
        return total / len(f)

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        return [min(1.0, max(0.0, self._proba(r))) for r in rows]
