"""Line confidences from a trained, calibrated classifier (``models/confidence/``).

Why a model: the rule engines' confidences are hand-set constants minus penalties; a
coder needs a number that means "how often a line like this is accepted". The model
is trained on ``corpus/dev`` (label: the line's code is in the gold of its note) from
features of the extraction and the line, and calibrated, so 0.8 means ~80 %.

The model is loaded once per process through its ``manifest.json``; a missing,
tampered or unreadable model raises :class:`~extractor.errors.ModelError` instead of
falling back to a constant that would look like a real estimate.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from extractor.errors import ModelError
from extractor.schemas import CptOutcome, Evidence, NoteFacts, NoteResult

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
#: Bump when the feature function changes: a model trained on other features is refused.
FEATURE_VERSION = 1

#: The only types a shipped model may contain besides skops' built-in safe set. Listed
#: explicitly (never ``trusted=True``), so a swapped file cannot smuggle code in.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.feature_extraction._dict_vectorizer.DictVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "builtins.dict",
    "builtins.list",
    "builtins.tuple",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
)

_CATCHALL = ("L98.9", "L98.8", "R21", "L30.9", "R22", "R23.8")
_DEFAULT_ELEMENTS = ("technique", "size", "margins", "site", "laterality", "count",
                     "histology", "diagnosis")
_BYPASS: contextvars.ContextVar[bool] = contextvars.ContextVar("dermcode_conf_bypass",
                                                               default=False)


class Manifest(BaseModel):
    """``manifest.json`` next to the model: what it is, what it was trained on, how good."""

    model_config = ConfigDict(extra="allow")

    created: str
    model_file: str = MODEL_FILE
    model_sha256: str
    sklearn_version: str
    skops_version: str
    feature_version: int
    features: list[str]
    corpus: str
    corpus_hash: str
    seed: int
    estimator: str
    metrics: dict[str, Any]
    trusted_types: list[str]


class ConfidenceModel:
    """A loaded model and its manifest; ``predict`` maps feature dicts to probabilities."""

    def __init__(self, estimator: Any, manifest: Manifest, path: Path) -> None:
        self.estimator = estimator
        self.manifest = manifest
        self.path = path

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        if not rows:
            return []
        if not hasattr(self.estimator, "predict_proba"):  # the linear.json form
            return self.estimator.predict(rows)
        proba = self.estimator.predict_proba(rows)
        classes = list(self.estimator.classes_)
        col = classes.index(1) if 1 in classes else classes.index(True)
        return [float(min(1.0, max(0.0, p))) for p in proba[:, col]]


# ------------------------------------------------------------------ locating and loading


def models_root() -> Path:
    """``DERMCODE_MODELS`` if set, else the repository's ``models/`` (or the wheel's copy)."""
    override = os.environ.get("DERMCODE_MODELS")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parent
    for candidate in (here / "_models", here.parent / "models"):
        if (candidate / "confidence").is_dir():
            return candidate
    return here.parent / "models"


def latest_model_dir(root: Path | None = None) -> Path:
    """The newest ``models/confidence/<YYYY-MM-DD>/`` (ISO dates sort as strings)."""
    base = (root or models_root()) / "confidence"
    dated = sorted(p for p in base.glob("*") if p.is_dir()
                   and re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.name))
    if not dated:
        raise ModelError(
            f"no confidence model under {base} (expected {base}/<YYYY-MM-DD>/{MANIFEST_FILE}); "
            "run `dermcode train` to build one"
        )
    return dated[-1]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model_dir(directory: Path, fast: bool = True) -> ConfidenceModel:
    """Load and verify one model folder (manifest, checksum, trusted types, feature version).

    With ``fast`` (the default for coding notes), the checksummed ``linear.json`` export
    of the same estimator is used when present, so scikit-learn and skops are never
    imported at run time; training, evaluation and the tests load the skops file.
    """
    mpath = directory / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate_json(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"confidence model manifest {mpath} is missing") from None
    except (OSError, ValueError, ValidationError) as exc:
        raise ModelError(f"confidence model manifest {mpath} is unreadable: {exc}") from None
    if manifest.feature_version != FEATURE_VERSION:
        raise ModelError(
            f"{mpath}: model built for feature version {manifest.feature_version}, this code "
            f"computes version {FEATURE_VERSION}; run `dermcode train`"
        )
    linear_name = getattr(manifest, "linear_file", None)
    if fast and linear_name:
        from extractor.confidence_linear import LinearConfidence

        lpath = directory / linear_name
        if not lpath.is_file():
            raise ModelError(f"confidence model file {lpath} is missing")
        if sha256_of(lpath) != getattr(manifest, "linear_sha256", None):
            raise ModelError(f"confidence model file {lpath} does not match its manifest "
                             "checksum (corrupt or replaced); run `dermcode train`")
        try:
            return ConfidenceModel(LinearConfidence.from_file(lpath), manifest, directory)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"confidence model {lpath} could not be read: {exc}") from None
    import skops.io as sio

    fpath = directory / manifest.model_file
    if not fpath.is_file():
        raise ModelError(f"confidence model file {fpath} is missing")
    if sha256_of(fpath) != manifest.model_sha256:
        raise ModelError(f"confidence model file {fpath} does not match its manifest checksum "
                         "(corrupt or replaced); run `dermcode train`")
    try:
        untrusted = set(sio.get_untrusted_types(file=fpath))
        unknown = untrusted - set(TRUSTED_TYPES)
        if unknown:
            raise ModelError(f"{fpath} contains types outside the trusted list: {sorted(unknown)}")
        estimator = sio.load(fpath, trusted=sorted(untrusted))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - skops raises many types on a bad file
        raise ModelError(f"confidence model {fpath} could not be loaded: {exc}") from None
    if not hasattr(estimator, "predict_proba"):
        raise ModelError(f"{fpath} does not hold a probabilistic classifier")
    return ConfidenceModel(estimator, manifest, directory)


@lru_cache(maxsize=4)
def _load_cached(directory: str) -> ConfidenceModel:
    return load_model_dir(Path(directory))


def load_model(directory: Path | None = None) -> ConfidenceModel:
    """The process-wide model (loaded once per folder); ModelError if absent or corrupt."""
    return _load_cached(str((directory or latest_model_dir()).resolve()))


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """Within this block :func:`apply` leaves results unchanged: used by ``dermcode train``,
    which must run the engine before any model exists (the features never read confidences)."""
    token = _BYPASS.set(True)
    try:
        yield
    finally:
        _BYPASS.reset(token)


# ------------------------------------------------------------------ features


def _overlaps(a: list[Evidence], b: list[Evidence]) -> bool:
    return any(x.start < y.end and y.start < x.end for x in a for y in b)


def _distance(a: list[Evidence], b: list[Evidence]) -> float:
    """Characters between the nearest spans of two evidence lists; -1 when either is empty."""
    if not a or not b:
        return -1.0
    d = min(max(0, max(x.start, y.start) - min(x.end, y.end)) for x in a for y in b)
    return math.log1p(d)


def _rule_prefix(rule_id: str) -> str:
    """``proc.excision.003`` → ``proc.excision``: the rule family generalises, the number not."""
    return re.sub(r"\.\d+$", "", rule_id) or "none"


def note_context(facts: NoteFacts, cpt_out: CptOutcome | None = None,
                 icd: Any = None) -> tuple[CptOutcome, Any]:
    """The engines' intermediate outcomes, recomputed from the facts when not supplied."""
    from extractor.coding import cpt, icd10

    if icd is None:
        icd = icd10.code_note(facts)
    if cpt_out is None:
        cpt_out = cpt.code_cpt(facts, icd)
    return cpt_out, icd


def features(result: NoteResult, facts: NoteFacts, cpt_out: CptOutcome | None = None,
             icd: Any = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One feature dict per CPT line and per ICD line of ``result`` (same order).

    Never reads a line's ``confidence``, so applying the model twice gives the same answer.
    """
    from extractor.coding.cpt_tables import tables

    cpt_out, icd = note_context(facts, cpt_out, icd)
    t = tables()
    performed = [i for i, p in enumerate(facts.procedures) if p.status == "performed"]
    pathology = any(d.source == "pathology" for d in facts.diagnoses) or any(
        s[0] == "pathology" for s in facts.sections)
    flag_ids = {f.id for f in result.flags}
    note = {
        "note_len_log": math.log1p(facts.text_length),
        "n_procedures": float(len(performed)),
        "pathology_in_note": float(pathology),
        "n_cpt_lines": float(len(result.cpt)),
        "n_icd_lines": float(len(result.icd10)),
        "n_flags": float(len(flag_ids)),
        "path_pending": float(bool(facts.cues.get("path_pending"))),
        "cosmetic": float(bool(facts.cues.get("cosmetic"))),
        "patient_known": float(facts.patient is not None),
    }
    code_procs: dict[str, list[int]] = {}
    for k, codes in cpt_out.procedure_codes.items():
        for c in codes:
            code_procs.setdefault(c, []).append(int(k))
    defaults: dict[int, set[str]] = {}
    for k, el in cpt_out.defaults:
        defaults.setdefault(int(k), set()).add(el)
    icd_ev = {ln.code: ln.evidence for ln in result.icd10}
    pointed = {c for ln in result.cpt for c in ln.icd10}

    cpt_rows = []
    for ln in result.cpt:
        row = t.codes.get(ln.code)
        procs = code_procs.get(ln.code) or [
            i for i in performed if _overlaps(ln.evidence, facts.procedures[i].evidence)]
        ps = [facts.procedures[i] for i in procs if i < len(facts.procedures)]
        els = set().union(*(defaults.get(i, set()) for i in procs)) if procs else set()
        p0 = ps[0] if ps else None
        mods = set(ln.modifiers)
        proc_ev = [e for p in ps for e in p.evidence] or ln.evidence
        f: dict[str, Any] = {
            **note,
            "line": "cpt",
            "family": row.family if row else "unknown",
            "prefix": ln.code[:3],
            "is_em": float(ln.code.startswith("992")),
            "is_addon": float(bool(row and row.addon_of)),
            "units_log": math.log1p(ln.units),
            "n_modifiers": float(len(mods)),
            "has_59": float(bool(mods & {"59", "XS", "XE", "XP", "XU"})),
            "has_25": float("25" in mods),
            "has_anatomic": float(any(re.fullmatch(r"[EFT][1-9A]", m) for m in mods)),
            "n_pointers": float(len(ln.icd10)),
            "pointer_d49": float("D49.2" in ln.icd10),
            "pointer_catchall": float(any(c.startswith(_CATCHALL) for c in ln.icd10)),
            "n_evidence": float(len(ln.evidence)),
            "n_linked_procs": float(len(ps)),
            "rule": _rule_prefix(p0.rule_id) if p0 else "none",
            "kind": p0.kind if p0 else "none",
            "method": (p0.method or "none") if p0 else "none",
            "section": (p0.section or "none") if p0 else "none",
            "intent": (p0.intent or "none") if p0 else "none",
            "uncertain": float(any(p.uncertain for p in ps)),
            "has_size": float(any(p.size_cm or p.excised_cm or p.length_cm for p in ps)),
            "has_site": float(any(p.site for p in ps)),
            "has_count": float(any(p.count for p in ps)),
            "default_any": float(bool(els)),
            "n_defaults": float(len(els)),
            "dist_dx": _distance(proc_ev, [e for c in ln.icd10 for e in icd_ev.get(c, [])]),
        }
        for el in _DEFAULT_ELEMENTS:
            f[f"default_{el}"] = float(el in els)
        cpt_rows.append(f)

    icd_rows = []
    proc_ev_all = [e for i in performed for e in facts.procedures[i].evidence]
    lat_missing = list(getattr(icd, "laterality_missing", []) or [])
    for il in result.icd10:
        dxs = [d for d in facts.diagnoses if _overlaps(il.evidence, d.evidence)]
        d0 = dxs[0] if dxs else None
        desc = il.description.lower()
        f = {
            **note,
            "line": "icd",
            "chapter": il.code[:1],
            "category": il.code[:3],
            "is_z": float(il.code.startswith("Z")),
            "is_d49": float(il.code == "D49.2"),
            "is_catchall": float(il.code.startswith(_CATCHALL)),
            "unspecified": float("unspecified" in desc),
            "pointed_by_cpt": float(il.code in pointed),
            "n_evidence": float(len(il.evidence)),
            "n_linked_dx": float(len(dxs)),
            "rule": _rule_prefix(d0.rule_id) if d0 else "none",
            "source": d0.source if d0 else "none",
            "section": (d0.section or "none") if d0 else "none",
            "dx_status": d0.status if d0 else "none",
            "uncertain": float(any(d.uncertain for d in dxs)),
            "has_site": float(any(d.site for d in dxs)),
            "from_pathology": float(any(d.source == "pathology" for d in dxs)),
            "laterality_missing": float(_overlaps(il.evidence, lat_missing)),
            "dist_proc": _distance(il.evidence, proc_ev_all),
        }
        icd_rows.append(f)
    return cpt_rows, icd_rows


# ------------------------------------------------------------------ applying


def apply(result: NoteResult, facts: NoteFacts, cpt_out: CptOutcome | None = None,
          icd: Any = None, model: ConfidenceModel | None = None) -> NoteResult:
    """Overwrite every CPT and ICD line's ``confidence`` with the model's probability.

    ``cpt_out``/``icd`` are the engines' outcomes (recomputed from ``facts`` when not
    given). Returns a new NoteResult; the input is not modified.
    """
    if _BYPASS.get():
        return result
    m = model or load_model()
    cpt_rows, icd_rows = features(result, facts, cpt_out, icd)
    probs = m.predict(cpt_rows + icd_rows)
    # Copy only the lines whose confidence changes: a deep copy of the whole result
    # (entities included) cost more than the model itself.
    cpt_lines = [
        ln.model_copy(update={"confidence": round(p, 3)})
        for ln, p in zip(result.cpt, probs[: len(cpt_rows)], strict=True)
    ]
    icd_lines = [
        il.model_copy(update={"confidence": round(p, 3)})
        for il, p in zip(result.icd10, probs[len(cpt_rows):], strict=True)
    ]
    return result.model_copy(update={"cpt": cpt_lines, "icd10": icd_lines})


def manifest_json(m: Manifest) -> str:
    return json.dumps(m.model_dump(), indent=2, sort_keys=False) + "\n"
