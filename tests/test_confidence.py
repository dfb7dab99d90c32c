"""The confidence model: shipped artifact loads, outputs probabilities, fails loudly when
broken, and training is reproducible from its seed."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from extractor import confidence, training
from extractor.errors import ModelError

NOTE = (
    "A&P: 1. Changing pigmented papule L upper back, r/o melanoma. Shave bx performed.\n"
    "2. AKs x4 on the scalp treated with LN2.\n"
)


def synthetic(n: int = 120, seed: int = 0) -> tuple[list[dict], list[int]]:
    rng = random.Random(seed)
    rows, y = [], []
    for _ in range(n):
        default = rng.random() < 0.3
        fam = rng.choice(["biopsy_tangential", "destruction_premalignant", "em"])
        rows.append({"line": "cpt", "family": fam, "default_any": float(default),
                     "n_evidence": float(rng.randint(0, 4))})
        p = 0.4 if default else 0.9
        y.append(int(rng.random() < p))
    return rows, y


@pytest.fixture(scope="module")
def model() -> confidence.ConfidenceModel:
    return confidence.load_model()


def test_shipped_model_loads_once(model: confidence.ConfidenceModel) -> None:
    assert confidence.load_model() is model
    assert model.manifest.feature_version == confidence.FEATURE_VERSION
    assert set(model.manifest.trusted_types) <= set(confidence.TRUSTED_TYPES)
    assert model.manifest.corpus.endswith("dev")


def test_apply_gives_probabilities(model: confidence.ConfidenceModel) -> None:
    from extractor.engine import code_text, extract

    with confidence.bypass():
        result = code_text(NOTE, "t")
    _, facts = extract(NOTE)
    assert result.cpt and result.icd10
    out = confidence.apply(result, facts)
    confs = [ln.confidence for ln in out.cpt] + [il.confidence for il in out.icd10]
    assert all(0.0 <= c <= 1.0 for c in confs)
    # idempotent: the features never read the confidences they overwrite
    again = confidence.apply(out, facts)
    assert [ln.confidence for ln in again.cpt] == [ln.confidence for ln in out.cpt]
    assert out is not result


def test_bypass_leaves_result_unchanged(model: confidence.ConfidenceModel) -> None:
    from extractor.engine import code_text, extract

    with confidence.bypass():
        result = code_text(NOTE, "t")
        _, facts = extract(NOTE)
        assert confidence.apply(result, facts) is result


def _copy(tmp_path: Path) -> Path:
    src = confidence.latest_model_dir()
    dst = tmp_path / "confidence" / src.name
    shutil.copytree(src, dst)
    return dst


def test_absent_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no confidence model"):
        confidence.latest_model_dir(tmp_path)
    (tmp_path / "confidence" / "2026-01-01").mkdir(parents=True)
    with pytest.raises(ModelError, match="manifest"):
        confidence.load_model_dir(tmp_path / "confidence" / "2026-01-01")


def test_corrupt_model_file_is_a_model_error(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    f = d / confidence.MODEL_FILE
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(ModelError, match="checksum"):
        confidence.load_model_dir(d, fast=False)
    # same garbage with a matching checksum: the loader itself must refuse it
    m = json.loads((d / confidence.MANIFEST_FILE).read_text())
    m["model_sha256"] = confidence.sha256_of(f)
    (d / confidence.MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="could not be loaded"):
        confidence.load_model_dir(d, fast=False)


def test_corrupt_linear_export_is_a_model_error(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    f = d / "linear.json"
    f.write_text('{"folds": [')
    with pytest.raises(ModelError, match="checksum"):
        confidence.load_model_dir(d)
    m = json.loads((d / confidence.MANIFEST_FILE).read_text())
    m["linear_sha256"] = confidence.sha256_of(f)
    (d / confidence.MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="could not be read"):
        confidence.load_model_dir(d)


def test_corrupt_manifest_is_a_model_error(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / confidence.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        confidence.load_model_dir(d)


def test_wrong_feature_version_is_refused(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    m = json.loads((d / confidence.MANIFEST_FILE).read_text())
    m["feature_version"] = -1
    (d / confidence.MANIFEST_FILE).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="feature version"):
        confidence.load_model_dir(d)


def test_env_override_points_at_empty_folder(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMCODE_MODELS", str(tmp_path))
    with pytest.raises(ModelError):
        confidence.load_model()


def test_training_is_reproducible() -> None:
    rows, y = synthetic()
    a = training.fit(rows, y, seed=7, n_splits=3).predict_proba(rows)[:, 1]
    b = training.fit(rows, y, seed=7, n_splits=3).predict_proba(rows)[:, 1]
    assert np.array_equal(a, b)
    assert ((a >= 0) & (a <= 1)).all()
    # the signal is learnt: defaulted lines get lower probabilities
    dflt = np.array([r["default_any"] for r in rows]) == 1.0
    assert a[dflt].mean() < a[~dflt].mean()


def test_saved_model_round_trips(tmp_path: Path) -> None:
    rows, y = synthetic()
    est = training.fit(rows, y, seed=7, n_splits=3)
    man = confidence.Manifest(
        created="2026-01-01", model_sha256="", sklearn_version="x", skops_version="x",
        feature_version=confidence.FEATURE_VERSION, features=sorted(rows[0]), corpus="synthetic",
        corpus_hash="0", seed=7, estimator="test", metrics={}, trusted_types=[])
    d = training.save(est, tmp_path / "confidence" / "2026-01-01", man)
    expected = est.predict_proba(rows)[:, 1].tolist()
    # the skops estimator and its linear.json export give the same probabilities
    assert confidence.load_model_dir(d, fast=False).predict(rows) == pytest.approx(expected)
    assert confidence.load_model_dir(d).predict(rows) == pytest.approx(expected, abs=1e-9)


def test_single_class_training_is_refused() -> None:
    rows, _ = synthetic(20)
    with pytest.raises(ModelError):
        training.fit(rows, [1] * 20)
