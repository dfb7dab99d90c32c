"""Training the confidence model (``dermcode train``): reproducible from corpus/dev alone.

Why here and not in a notebook: the shipped model must be rebuilt bit-for-bit in its
predictions by anyone, from a fixed seed and the dev corpus, with the numbers of its
model card computed the same way every time.

Data: every CPT and ICD line the engine suggests on a dev note; label 1 when the line's
code is in that note's gold (a coder would keep it). Metrics are cross-validated with
folds grouped by note, so lines of one note never sit on both sides of a split.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from extractor import confidence
from extractor.errors import ModelError
from extractor.evaluate import GoldCase, corpus_hash, load_gold_dir
from extractor.schemas import NoteFacts, NoteResult

SEED = 20261125
N_FOLDS = 5
N_BINS = 10


@dataclass
class Dataset:
    """Feature rows with their labels; ``groups`` = note index, ``rule_conf`` = the engine's
    own hand-set confidence (the baseline the model must beat)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    rule_conf: list[float] = field(default_factory=list)
    line_type: list[str] = field(default_factory=list)


def line_labels(result: NoteResult, case: GoldCase) -> tuple[list[int], list[int]]:
    """1 when the suggested code is in the note's gold (CPT codes; ICD-10-CM codes)."""
    gold_cpt = {ln.code for ln in case.gold.cpt}
    gold_icd = set(case.gold.icd10)
    return ([int(ln.code in gold_cpt) for ln in result.cpt],
            [int(il.code in gold_icd) for il in result.icd10])


def add_note(ds: Dataset, k: int, case: GoldCase, result: NoteResult, facts: NoteFacts) -> None:
    cpt_rows, icd_rows = confidence.features(result, facts)
    cpt_y, icd_y = line_labels(result, case)
    ds.rows += cpt_rows + icd_rows
    ds.labels += cpt_y + icd_y
    ds.groups += [k] * (len(cpt_rows) + len(icd_rows))
    ds.rule_conf += [ln.confidence for ln in result.cpt] + [il.confidence for il in result.icd10]
    ds.line_type += ["cpt"] * len(cpt_rows) + ["icd"] * len(icd_rows)


def build_dataset(directory: Path) -> Dataset:
    """Run the engine (model bypassed: it may not exist yet) on every note of a gold folder."""
    from extractor.engine import code_with_facts
    from extractor.pipeline import get_pipeline

    get_pipeline()
    ds = Dataset()
    with confidence.bypass():
        for k, case in enumerate(load_gold_dir(directory)):
            result, facts = code_with_facts(case.text, case.note_id)
            add_note(ds, k, case, result, facts)
    return ds


C_REG = 1.0  # chosen by grouped 5-fold CV Brier over 0.03-3 on dev


def make_estimator(seed: int = SEED, n_splits: int = N_FOLDS, c: float = C_REG) -> Any:
    """One-hot + scaled numerics → L2 logistic regression, sigmoid-calibrated (Platt).

    Logistic regression because ~700 lines cannot support a deeper model without
    overfitting the dev notes; sigmoid rather than isotonic calibration for the same reason.
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MaxAbsScaler

    base = Pipeline([
        ("vectorize", DictVectorizer(sparse=False, sort=True)),
        ("scale", MaxAbsScaler()),
        ("logreg", LogisticRegression(C=c, max_iter=5000, random_state=seed)),
    ])
    return CalibratedClassifierCV(
        base, method="sigmoid",
        cv=StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed),
    )


def fit(rows: list[dict[str, Any]], labels: list[int], seed: int = SEED,
        n_splits: int = N_FOLDS) -> Any:
    if len(set(labels)) < 2:
        raise ModelError("training data holds a single class; cannot fit a classifier")
    est = make_estimator(seed, n_splits)
    est.fit(rows, np.asarray(labels))
    return est


def reliability_table(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, Any]]:
    """Equal-width bins: lines, mean predicted probability, observed acceptance rate."""
    out = []
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)
    for b in range(n_bins):
        m = idx == b
        if not m.any():
            continue
        out.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "lines": int(m.sum()),
                    "mean_predicted": round(float(p[m].mean()), 3),
                    "observed": round(float(y[m].mean()), 3)})
    return out


def probability_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    m: dict[str, Any] = {"lines": int(len(y)), "positive_rate": round(float(y.mean()), 4),
                         "brier": round(float(brier_score_loss(y, p)), 4)}
    if len(set(y.tolist())) == 2:
        m["log_loss"] = round(float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6))), 4)
        m["roc_auc"] = round(float(roc_auc_score(y, p)), 4)
    return m


def cross_validate(ds: Dataset, seed: int = SEED) -> dict[str, Any]:
    """Out-of-fold probabilities with folds grouped by note; metrics vs the rule baseline."""
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(ds.labels)
    groups = np.asarray(ds.groups)
    oof = np.zeros(len(y))
    cv = StratifiedGroupKFold(n_splits=N_FOLDS, shuffle=True, random_state=seed)
    for train, test in cv.split(np.zeros(len(y)), y, groups):
        est = fit([ds.rows[i] for i in train], y[train].tolist(), seed)
        oof[test] = est.predict_proba([ds.rows[i] for i in test])[:, 1]
    rule = np.asarray(ds.rule_conf)
    types = np.asarray(ds.line_type)
    out: dict[str, Any] = {
        "model": probability_metrics(y, oof),
        "rule_confidence_baseline": probability_metrics(y, rule),
        "reliability": reliability_table(y, oof),
    }
    for t in ("cpt", "icd"):
        m = types == t
        if m.any():
            out[f"model_{t}"] = probability_metrics(y[m], oof[m])
    return out


def patterns_hash() -> str:
    """sha256 of the rule files: the model is tied to the rules that produced its lines."""
    from extractor.patterns import patterns_dir

    root = patterns_dir()
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.jsonl")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def feature_names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({k for r in rows for k in r})


def save(est: Any, directory: Path, manifest: confidence.Manifest) -> Path:
    """Write ``model.skops`` and ``manifest.json``; refuse a model with untrusted types."""
    import skops.io as sio

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / confidence.MODEL_FILE
    sio.dump(est, path)
    untrusted = set(sio.get_untrusted_types(file=path))
    extra = untrusted - set(confidence.TRUSTED_TYPES)
    if extra:
        path.unlink()
        raise ModelError(f"model uses types missing from confidence.TRUSTED_TYPES: {sorted(extra)}")
    manifest.model_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.trusted_types = sorted(untrusted)
    from extractor import confidence_linear

    linear = directory / confidence_linear.LINEAR_FILE
    linear.write_text(json.dumps(confidence_linear.export(est)), encoding="utf-8")
    manifest.linear_file = confidence_linear.LINEAR_FILE  # type: ignore[attr-defined]
    manifest.linear_sha256 = hashlib.sha256(linear.read_bytes()).hexdigest()  # type: ignore[attr-defined]
    (directory / confidence.MANIFEST_FILE).write_text(confidence.manifest_json(manifest),
                                                      encoding="utf-8")
    return directory


def train(corpus_dir: Path, models_dir: Path, seed: int = SEED,
          date: str | None = None) -> tuple[Path, confidence.Manifest]:
    """Build the dataset, cross-validate, fit on all of it, save, write the model card."""
    import sklearn
    import skops

    ds = build_dataset(corpus_dir)
    metrics = cross_validate(ds, seed)
    est = fit(ds.rows, ds.labels, seed)
    day = date or dt.date.today().isoformat()
    manifest = confidence.Manifest(
        created=day,
        model_sha256="",
        sklearn_version=sklearn.__version__,
        skops_version=skops.__version__,
        feature_version=confidence.FEATURE_VERSION,
        features=feature_names(ds.rows),
        corpus=Path(corpus_dir).as_posix(),
        corpus_hash=corpus_hash(corpus_dir),
        patterns_hash=patterns_hash(),
        seed=seed,
        estimator="CalibratedClassifierCV(sigmoid, 5-fold) of "
                  f"DictVectorizer > MaxAbsScaler > LogisticRegression(C={C_REG})",
        metrics={"cross_validated": metrics, "notes": int(max(ds.groups) + 1) if ds.groups else 0},
        trusted_types=[],
    )
    out = save(est, models_dir / "confidence" / day, manifest)
    (models_dir / "README.md").write_text(model_card(manifest), encoding="utf-8")
    return out, manifest


def model_card(m: confidence.Manifest) -> str:
    """models/README.md: what the model is, what it learnt from, how well it is calibrated."""
    cv = m.metrics["cross_validated"]
    mod, base = cv["model"], cv["rule_confidence_baseline"]
    rows = "\n".join(f"| {r['bin']} | {r['lines']} | {r['mean_predicted']:.3f} | "
                     f"{r['observed']:.3f} |" for r in cv["reliability"])

    def fmt(d: dict[str, Any]) -> str:
        return " | ".join(str(d.get(k, "—")) for k in ("lines", "positive_rate", "brier",
                                                       "log_loss", "roc_auc"))

    feats = ", ".join(f"`{f}`" for f in m.features)
    return f"""# Models

## confidence/{m.created} — line confidence (generated by `dermcode train`; do not edit)

**What it predicts.** For every CPT/HCPCS line and every ICD-10-CM line that dermcode
suggests, the probability that a coder would accept it. Label used for training: the
line's code appears in the gold coding of its note (CPT: the code, whatever its units or
modifiers; ICD-10-CM: the full code).

**Data.** `{m.corpus}` only ({m.metrics.get('notes', '?')} notes, {mod['lines']} suggested
lines, {mod['positive_rate']:.1%} accepted), corpus hash `{m.corpus_hash[:16]}…`, rules
(`patterns/`) hash `{str(getattr(m, "patterns_hash", ""))[:16]}…`. The
held-out `corpus/test` is never used for training; score it with `dermcode evaluate
corpus/test --confidence` or `notebooks/evaluation.ipynb`.

**Model.** {m.estimator}; seed {m.seed}; scikit-learn {m.sklearn_version}, saved with
skops {m.skops_version} (`model.skops`, sha256 in `manifest.json`; loaded with an explicit
trusted-type list, never pickle).

**Features** (feature version {m.feature_version}; from the extraction and the line, never
from the line's current confidence): {feats}.

**Cross-validated metrics** ({N_FOLDS} folds grouped by note, out-of-fold probabilities):

| scores | lines | accepted | Brier | log loss | ROC AUC |
| --- | --- | --- | --- | --- | --- |
| model, all lines | {fmt(mod)} |
| model, CPT lines | {fmt(cv.get('model_cpt', {}))} |
| model, ICD lines | {fmt(cv.get('model_icd', {}))} |
| rule engine's hand-set confidence (baseline) | {fmt(base)} |

**Reliability** (out-of-fold, equal-width bins):

| predicted | lines | mean predicted | observed acceptance |
| --- | --- | --- | --- |
{rows}

**Retrain** (`dermcode train`) whenever the rules or engines change: the lines the
model scores are the engines' output, so a model trained on other rules is stale.

**Limits.** Trained on 100 synthetic notes written for this project: probabilities are
calibrated to that corpus and the current rules. Any change to the engines or the
feature function (bump `FEATURE_VERSION`) needs `dermcode train` and a new folder. The
label ignores units and modifiers, so a kept code with wrong units still counts as
accepted.
"""


def dumps_manifest(m: confidence.Manifest) -> str:
    return json.dumps(m.model_dump(), indent=2)
