"""Score the pipeline against a gold folder (``corpus/README.md`` format).

Why a library and not only a command: the CLI, the confidence-model trainer, the
notebook and the tests all need the same arithmetic and the same reading of the gold
files, so a figure means the same thing wherever it is quoted.

Scoring choices (CODING_CONVENTIONS §11, corpus/README.md):

* Sets are compared per note and pooled (micro average) with scikit-learn's
  ``precision_recall_fscore_support`` on multilabel-binarised rows (one row per note).
* Modifiers are scored as ``code:modifier`` pairs; 59/XS/XE/XP/XU are one class
  (written ``59``) and LT/RT/51 are dropped, because the gold does not annotate them.
* E/M level accuracy only counts notes where the gold or the prediction has a 992xx
  line, otherwise every procedure-only note would inflate it.
* Exact claim = the note's set of ``code×units`` equals the gold's (and, stricter, the
  set of ``code×units[modifiers]``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from extractor.schemas import NoteFacts, NoteResult

# ------------------------------------------------------------------ gold format

#: CONTRACT.md flag ids plus the project's own LESION_COUNT_MISMATCH.
def _known_flags() -> frozenset[str]:
    """Every flag id dermcode can raise: the rows of ``patterns/coding/flags.jsonl``
    (the contract's ids plus the project's own), defined there once."""
    from extractor.coding.flags import flag_rows

    return frozenset(r.id for r in flag_rows())


KNOWN_FLAGS: frozenset[str] = _known_flags()

#: The distinct-procedural-service modifiers the scorer treats as one class (§11.2).
DISTINCT_MODIFIERS: frozenset[str] = frozenset({"59", "XS", "XE", "XP", "XU"})
#: Modifiers neither annotated nor scored (§11.4, §11.5).
IGNORED_MODIFIERS: frozenset[str] = frozenset({"LT", "RT", "51"})

_CPT_SHAPE = re.compile(r"^(\d{4}[0-9FTU]|[A-V]\d{4})$")
_ICD_SHAPE = re.compile(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")
_EM = re.compile(r"^992\d\d$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GoldCptLine(_Strict):
    """One claim line of a gold file: code, total units, modifiers, diagnosis pointers."""

    code: str
    units: int = Field(ge=1)
    modifiers: list[str] = Field(default_factory=list)
    icd10: list[str] = Field(default_factory=list)

    @field_validator("code")
    @classmethod
    def _cpt_shape(cls, v: str) -> str:
        if not _CPT_SHAPE.match(v):
            raise ValueError(f"{v!r} is not a five-character CPT/HCPCS code")
        return v

    @field_validator("icd10")
    @classmethod
    def _icd_shape(cls, v: list[str]) -> list[str]:
        for c in v:
            if not _ICD_SHAPE.match(c):
                raise ValueError(f"ICD-10-CM pointer {c!r} must be a dotted code")
        return v


class GoldDermoscopy(_Strict):
    status: Literal["not_mentioned", "without_findings", "findings_documented"]
    mdm_data_categories: list[Literal[1, 2, 3]] = Field(default_factory=list)


class GoldNote(_Strict):
    """A gold file (corpus/README.md). Strict, so a misspelt key fails instead of scoring 0."""

    cpt: list[GoldCptLine]
    icd10: list[str]
    flags: list[str]
    dermoscopy: GoldDermoscopy
    patient: Literal["new", "established"] | None
    rationale: str

    @field_validator("icd10")
    @classmethod
    def _icd_shape(cls, v: list[str]) -> list[str]:
        for c in v:
            if not _ICD_SHAPE.match(c):
                raise ValueError(f"ICD-10-CM code {c!r} must be a dotted code")
        if len(set(v)) != len(v):
            raise ValueError("an ICD-10-CM code is listed twice")
        return v

    @field_validator("flags")
    @classmethod
    def _flags_once(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a flag id is listed twice")
        return v


@dataclass(frozen=True)
class GoldCase:
    """One note of a gold folder: its id (path relative to the folder), text and gold."""

    note_id: str
    text: str
    gold: GoldNote


def gold_pairs(directory: Path) -> list[tuple[Path, Path]]:
    """Every ``NAME.txt`` under DIR with its ``NAME.json`` (sorted, so runs are stable)."""
    return [(t, t.with_suffix(".json")) for t in sorted(Path(directory).rglob("*.txt"))]


def load_gold(path: Path) -> GoldNote:
    return GoldNote.model_validate_json(Path(path).read_text(encoding="utf-8"))


def load_gold_dir(directory: Path) -> list[GoldCase]:
    """All notes of a gold folder; a missing or malformed gold file raises (no silent 0)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"gold folder {directory} does not exist")
    cases = []
    for txt, js in gold_pairs(directory):
        if not js.exists():
            raise FileNotFoundError(f"{txt} has no gold file {js.name}")
        cases.append(GoldCase(txt.relative_to(directory).as_posix(),
                              txt.read_text(encoding="utf-8"), load_gold(js)))
    if not cases:
        raise FileNotFoundError(f"no .txt notes under {directory}")
    return cases


def corpus_hash(directory: Path) -> str:
    """sha256 over every note and gold file (relative path + bytes): the model's data id."""
    directory = Path(directory)
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.suffix in (".txt", ".json"):
            h.update(p.relative_to(directory).as_posix().encode() + b"\0")
            h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


# ------------------------------------------------------------------ normalised views


def norm_modifiers(mods: Iterable[str]) -> frozenset[str]:
    """59-class modifiers → ``59``; LT/RT/51 dropped; everything upper-cased."""
    out = set()
    for m in mods:
        m = m.strip().upper()
        if m in IGNORED_MODIFIERS or not m:
            continue
        out.add("59" if m in DISTINCT_MODIFIERS else m)
    return frozenset(out)


@dataclass(frozen=True)
class ClaimLine:
    code: str
    units: int
    modifiers: frozenset[str]


@dataclass
class Claim:
    """The scored view of one note (gold or prediction)."""

    lines: list[ClaimLine]
    icd10: list[str]
    flags: list[str]
    dermoscopy_status: str
    mdm: list[int]
    evidence: dict[str, str] = field(default_factory=dict)  # label -> evidence text (pred only)

    @property
    def codes(self) -> set[str]:
        return {ln.code for ln in self.lines}

    @property
    def code_units(self) -> set[str]:
        return {f"{ln.code}x{ln.units}" for ln in self.lines}

    @property
    def code_mods(self) -> set[str]:
        return {f"{ln.code}:{m}" for ln in self.lines for m in ln.modifiers}

    @property
    def full_lines(self) -> set[str]:
        return {f"{ln.code}x{ln.units}[{','.join(sorted(ln.modifiers))}]" for ln in self.lines}

    @property
    def icd_full(self) -> set[str]:
        return set(self.icd10)

    @property
    def icd_category(self) -> set[str]:
        return {c[:3] for c in self.icd10}

    @property
    def em(self) -> str | None:
        ems = sorted(ln.code for ln in self.lines if _EM.match(ln.code))
        return ems[0] if ems else None


def _merge(lines: Iterable[tuple[str, int, Iterable[str]]]) -> list[ClaimLine]:
    """One line per code (CONTRACT.md), even if a predictor emitted a code twice."""
    by: dict[str, tuple[int, set[str]]] = {}
    for code, units, mods in lines:
        u, m = by.get(code, (0, set()))
        by[code] = (u + units, m | norm_modifiers(mods))
    return [ClaimLine(c, u, frozenset(m)) for c, (u, m) in sorted(by.items())]


def claim_of_gold(g: GoldNote) -> Claim:
    return Claim(
        lines=_merge((ln.code, ln.units, ln.modifiers) for ln in g.cpt),
        icd10=list(dict.fromkeys(g.icd10)),
        flags=list(dict.fromkeys(g.flags)),
        dermoscopy_status=g.dermoscopy.status,
        mdm=sorted(set(g.dermoscopy.mdm_data_categories)),
    )


def claim_of_result(r: NoteResult) -> Claim:
    ev: dict[str, str] = {}
    for ln in r.cpt:
        ev[ln.code] = " | ".join(e.text for e in ln.evidence[:3]) or ln.rationale
    for il in r.icd10:
        ev[il.code] = " | ".join(e.text for e in il.evidence[:3]) or il.description
    for f in r.flags:
        ev.setdefault(f.id, " | ".join(e.text for e in f.evidence[:3]) or f.message)
    return Claim(
        lines=_merge((ln.code, ln.units, ln.modifiers) for ln in r.cpt),
        icd10=list(dict.fromkeys(c.code for c in r.icd10)),
        flags=list(dict.fromkeys(f.id for f in r.flags)),
        dermoscopy_status=r.dermoscopy.status,
        mdm=sorted(set(r.dermoscopy.mdm_data_categories)),
        evidence=ev,
    )


# ------------------------------------------------------------------ arithmetic


class Score(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int  # gold items
    predicted: int


def set_scores(gold: Sequence[set[str]], pred: Sequence[set[str]],
               labels: Sequence[str] | None = None) -> Score:
    """Micro P/R/F1 over per-note label sets (sklearn on a multilabel-binarised matrix).

    ``labels`` restricts the scoring to those labels (e.g. one flag id).
    """
    from sklearn.metrics import precision_recall_fscore_support
    from sklearn.preprocessing import MultiLabelBinarizer

    if len(gold) != len(pred):
        raise ValueError("gold and prediction lists differ in length")
    classes = sorted(set(labels) if labels is not None
                     else set().union(*gold, *pred) if gold else set())
    n_gold = sum(len(g & set(classes)) for g in gold)
    n_pred = sum(len(p & set(classes)) for p in pred)
    if not classes or (n_gold == 0 and n_pred == 0):
        # Nothing to find and nothing claimed: sklearn would warn and return 0s.
        return Score(precision=0.0, recall=0.0, f1=0.0, support=n_gold, predicted=n_pred)
    # A never-used sentinel column keeps the matrix multilabel even with one label;
    # sklearn would otherwise read a single column as a binary target and count TNs.
    cols = [*classes, "\0sentinel"]
    mlb = MultiLabelBinarizer(classes=cols)
    mlb.fit([cols])
    yt = mlb.transform([g & set(classes) for g in gold])
    yp = mlb.transform([p & set(classes) for p in pred])
    p, r, f, _ = precision_recall_fscore_support(yt, yp, average="micro", zero_division=0)
    return Score(precision=float(p), recall=float(r), f1=float(f), support=n_gold,
                 predicted=n_pred)


def accuracy(gold: Sequence[object], pred: Sequence[object]) -> float | None:
    from sklearn.metrics import accuracy_score

    if not gold:
        return None
    return float(accuracy_score([str(g) for g in gold], [str(p) for p in pred]))


# ------------------------------------------------------------------ per-note report


class Miss(BaseModel):
    """A false negative (in gold, not predicted) or false positive (predicted, not gold)."""

    kind: Literal["FN", "FP"]
    what: Literal["cpt", "units", "modifier", "icd10", "flag", "dermoscopy", "em"]
    item: str
    evidence: str = ""  # the prediction's evidence (FP) or a hint from `considered` (FN)


class NoteEval(BaseModel):
    note_id: str
    exact_claim: bool
    exact_claim_modifiers: bool
    misses: list[Miss] = Field(default_factory=list)


class Report(BaseModel):
    """Everything ``dermcode evaluate`` prints; ``--format json`` dumps this model."""

    directory: str
    notes: int
    with_confidence: bool = False
    scores: dict[str, Score]
    flags: dict[str, Score]
    dermoscopy_accuracy: float | None
    em_accuracy: float | None
    em_notes: int
    exact_claim_rate: float
    exact_claim_modifiers_rate: float
    confidence_brier: float | None = None  # line confidence vs "code is in the gold"
    confidence_lines: int = 0
    per_note: list[NoteEval] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)


def _diff(what: str, gold: set[str], pred: set[str], hint: Callable[[str], str]) -> list[Miss]:
    out = [Miss(kind="FN", what=what, item=x, evidence=hint(x)) for x in sorted(gold - pred)]
    out += [Miss(kind="FP", what=what, item=x, evidence=hint(x)) for x in sorted(pred - gold)]
    return out


def note_eval(note_id: str, g: Claim, p: Claim,
              considered: dict[str, str] | None = None) -> NoteEval:
    """The misses of one note, each with the text a developer needs to see why."""
    considered = considered or {}

    def hint(item: str) -> str:
        code = re.split(r"[x:\[]", item)[0]
        if code in p.evidence:
            return p.evidence[code]
        if code in considered:
            return f"considered: {considered[code]}"
        return ""

    misses = _diff("cpt", g.codes, p.codes, hint)
    shared = g.codes & p.codes
    misses += _diff("units", {x for x in g.code_units if x.split("x")[0] in shared},
                    {x for x in p.code_units if x.split("x")[0] in shared}, hint)
    misses += _diff("modifier", {x for x in g.code_mods if x.split(":")[0] in shared},
                    {x for x in p.code_mods if x.split(":")[0] in shared}, hint)
    misses += _diff("icd10", g.icd_full, p.icd_full, hint)
    misses += _diff("flag", set(g.flags), set(p.flags), hint)
    if g.dermoscopy_status != p.dermoscopy_status:
        misses.append(Miss(kind="FN", what="dermoscopy", item=g.dermoscopy_status,
                           evidence=f"predicted {p.dermoscopy_status}"))
    if g.mdm != p.mdm:
        misses.append(Miss(kind="FN", what="dermoscopy", item=f"mdm {g.mdm}",
                           evidence=f"predicted mdm {p.mdm}"))
    return NoteEval(
        note_id=note_id,
        exact_claim=g.code_units == p.code_units,
        exact_claim_modifiers=g.full_lines == p.full_lines,
        misses=misses,
    )


def score(gold: Sequence[Claim], pred: Sequence[Claim], note_ids: Sequence[str] | None = None,
          considered: Sequence[dict[str, str]] | None = None, directory: str = "",
          with_confidence: bool = False) -> Report:
    """All the figures of a gold/prediction pairing (same order, one Claim per note)."""
    n = len(gold)
    ids = list(note_ids) if note_ids is not None else [str(i) for i in range(n)]
    cons = list(considered) if considered is not None else [{} for _ in range(n)]
    scores = {
        "cpt_code": set_scores([g.codes for g in gold], [p.codes for p in pred]),
        "cpt_code_units": set_scores([g.code_units for g in gold], [p.code_units for p in pred]),
        "modifiers": set_scores([g.code_mods for g in gold], [p.code_mods for p in pred]),
        "icd10_full": set_scores([g.icd_full for g in gold], [p.icd_full for p in pred]),
        "icd10_category": set_scores([g.icd_category for g in gold],
                                     [p.icd_category for p in pred]),
        "flags": set_scores([set(g.flags) for g in gold], [set(p.flags) for p in pred]),
        "mdm_categories": set_scores([{str(c) for c in g.mdm} for g in gold],
                                     [{str(c) for c in p.mdm} for p in pred]),
    }
    flag_ids = sorted(KNOWN_FLAGS | {f for c in (*gold, *pred) for f in c.flags})
    flags = {
        fid: set_scores([set(g.flags) for g in gold], [set(p.flags) for p in pred], [fid])
        for fid in flag_ids
    }
    em_pairs = [(g.em, p.em) for g, p in zip(gold, pred, strict=True) if g.em or p.em]
    per_note = [note_eval(i, g, p, c) for i, g, p, c in zip(ids, gold, pred, cons, strict=True)]
    for ne, g, p in zip(per_note, gold, pred, strict=True):
        if g.em and p.em and g.em != p.em:
            ne.misses.append(Miss(kind="FN", what="em", item=g.em, evidence=f"predicted {p.em}"))
    return Report(
        directory=directory,
        notes=n,
        with_confidence=with_confidence,
        scores=scores,
        flags=flags,
        dermoscopy_accuracy=accuracy([g.dermoscopy_status for g in gold],
                                     [p.dermoscopy_status for p in pred]),
        em_accuracy=accuracy([a for a, _ in em_pairs], [b for _, b in em_pairs]),
        em_notes=len(em_pairs),
        exact_claim_rate=(sum(x.exact_claim for x in per_note) / n) if n else 0.0,
        exact_claim_modifiers_rate=(sum(x.exact_claim_modifiers for x in per_note) / n)
        if n else 0.0,
        per_note=per_note,
    )


# ------------------------------------------------------------------ running the pipeline

Predictor = Callable[[str, str], tuple[NoteResult, NoteFacts | None]]


def engine_predictor(with_confidence: bool = False) -> Predictor:
    """``code_text`` (+ the facts, which the confidence model needs), pipeline built once.

    ``code_text`` applies the confidence model; without ``with_confidence`` it runs under
    :func:`extractor.confidence.bypass`, so the engines' own heuristic confidences are
    scored instead (the Brier score of the two is how the model earns its place).
    """
    from extractor import confidence
    from extractor.engine import code_with_facts
    from extractor.pipeline import get_pipeline

    get_pipeline()  # build once, before the loop
    if with_confidence:
        confidence.load_model()  # a missing or corrupt model fails here, before any note

    def run(text: str, note_id: str) -> tuple[NoteResult, NoteFacts | None]:
        if with_confidence:
            return code_with_facts(text, note_id)
        with confidence.bypass():
            return code_with_facts(text, note_id)

    return run


@dataclass
class Prediction:
    case: GoldCase
    result: NoteResult | None
    facts: NoteFacts | None
    error: str | None = None


def predict_all(cases: Sequence[GoldCase], predictor: Predictor) -> list[Prediction]:
    """Run the predictor on every note; a crash on one note is recorded, not fatal."""
    out = []
    for c in cases:
        try:
            res, facts = predictor(c.text, c.note_id)
            out.append(Prediction(c, res, facts))
        except Exception as exc:  # noqa: BLE001 - one bad note must not hide the others
            out.append(Prediction(c, None, None, f"{type(exc).__name__}: {exc}"))
    return out


def _empty_claim() -> Claim:
    return Claim(lines=[], icd10=[], flags=[], dermoscopy_status="not_mentioned", mdm=[])


def report_of(preds: Sequence[Prediction], directory: str = "",
              with_confidence: bool = False) -> Report:
    """Score predictions (a failed note counts as an empty prediction, and is listed)."""
    gold = [claim_of_gold(p.case.gold) for p in preds]
    pred = [claim_of_result(p.result) if p.result is not None else _empty_claim() for p in preds]
    cons = [{c.code: c.reason for c in p.result.considered} if p.result is not None else {}
            for p in preds]
    rep = score(gold, pred, [p.case.note_id for p in preds], cons, directory, with_confidence)
    rep.errors = {p.case.note_id: p.error for p in preds if p.error}
    y, conf, _ = confidence_pairs(preds)
    if y:
        from sklearn.metrics import brier_score_loss

        rep.confidence_brier = float(brier_score_loss(y, conf))
        rep.confidence_lines = len(y)
    return rep


def confidence_pairs(preds: Sequence[Prediction]) -> tuple[list[int], list[float], list[str]]:
    """(accepted?, confidence, line type) for every suggested CPT and ICD line.

    Accepted = the line's code is in the note's gold: the label the confidence model
    is trained to predict, so its Brier score is comparable across folders.
    """
    y: list[int] = []
    conf: list[float] = []
    kind: list[str] = []
    for p in preds:
        if p.result is None:
            continue
        gold_cpt = {ln.code for ln in p.case.gold.cpt}
        for ln in p.result.cpt:
            y.append(int(ln.code in gold_cpt))
            conf.append(ln.confidence)
            kind.append("cpt")
        for il in p.result.icd10:
            y.append(int(il.code in p.case.gold.icd10))
            conf.append(il.confidence)
            kind.append("icd")
    return y, conf, kind


def evaluate_dir(directory: Path, predictor: Predictor | None = None,
                 with_confidence: bool = False) -> Report:
    """Score the pipeline (or ``predictor``) on every note of a gold folder."""
    cases = load_gold_dir(directory)
    preds = predict_all(cases, predictor or engine_predictor(with_confidence))
    return report_of(preds, str(directory), with_confidence)


def gold_predictor(cases: Sequence[GoldCase]) -> Predictor:
    """A predictor that answers with the gold itself (score 1.0): a check of the scorer."""
    from extractor.schemas import CptLine, Dermoscopy, Flag, Icd10Line

    by_id = {c.note_id: c.gold for c in cases}

    def run(text: str, note_id: str) -> tuple[NoteResult, NoteFacts | None]:
        g = by_id[note_id]
        return NoteResult(
            note_id=note_id,
            cpt=[CptLine(code=ln.code, units=ln.units, modifiers=ln.modifiers, icd10=ln.icd10,
                         confidence=1.0) for ln in g.cpt],
            icd10=[Icd10Line(code=c, description="", confidence=1.0) for c in g.icd10],
            flags=[Flag(id=f, severity="warning", message="") for f in g.flags],
            dermoscopy=Dermoscopy(status=g.dermoscopy.status,
                                  mdm_data_categories=list(g.dermoscopy.mdm_data_categories)),
        ), None

    return run


def dumps(report: Report, verbose: bool = False) -> str:
    data = report.model_dump()
    if not verbose:
        data.pop("per_note")
    return json.dumps(data, indent=2)
