"""Pydantic models for every structure that crosses a boundary.

Three kinds live here: rows of the rule files under ``patterns/`` (validated at
load time, so a typo fails with its file and line instead of silently matching
nothing), the *facts* the extraction pipeline hands to the coding engines (plain
data, so the engines never touch spaCy objects), and the output contract of
``../shared/CONTRACT.md`` (NoteResult / NoteError), which must never lose a field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# --------------------------------------------------------------------------- rules


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


TargetLabel = Literal[
    "PROCEDURE",
    "DIAGNOSIS",
    "SITE",
    "LATERALITY",
    "DERMOSCOPY",
    "DERMOSCOPY_FINDING",
    "DERMOSCOPY_IMAGE",
    "ENCOUNTER",
    "MODIFIER_CUE",
]


class TargetRule(_Strict):
    """One extraction rule: medspaCy's literal/category/pattern plus our id and attributes."""

    id: str
    literal: str
    category: TargetLabel
    pattern: None | str | list[dict[str, Any]] = None
    attrs: dict[str, Any] = Field(default_factory=dict)
    # regex rules only: lower-case words of which one must occur in the note for the
    # regex to run at all (most notes never mention dermoscopic images)
    requires: list[str] | None = None
    comment: str | None = None


ContextCategory = Literal[
    "NEGATED_EXISTENCE",
    "POSSIBLE_EXISTENCE",
    "HISTORICAL",
    "HYPOTHETICAL",
    "FAMILY",
    "PLANNED",
    "TERMINATE",
    "PSEUDO",
]


class ContextRuleRow(_Strict):
    """A ConText modifier rule (medspaCy's ConTextRule fields that we use)."""

    id: str
    literal: str
    category: ContextCategory
    pattern: None | str | list[dict[str, Any]] = None
    direction: Literal["FORWARD", "BACKWARD", "BIDIRECTIONAL", "TERMINATE", "PSEUDO"] = "FORWARD"
    max_scope: int | None = None
    allowed_types: list[TargetLabel] | None = None
    comment: str | None = None


SectionCategory = Literal[
    "chief_complaint",
    "hpi",
    "history",
    "family_history",
    "social_history",
    "medications",
    "allergies",
    "ros",
    "exam",
    "dermoscopy",
    "assessment",
    "plan",
    "assessment_plan",
    "procedure",
    "pathology",
    "diagnosis",
    "preop_diagnosis",
    "postop_diagnosis",
    "anesthesia",
    "findings",
    "followup",
    "other",
]


class SectionRuleRow(_Strict):
    """A section title. ``header_only`` titles count only when they end in a colon."""

    id: str
    literal: str
    category: SectionCategory
    comment: str | None = None


SiteGroup = Literal["A", "B", "C"]
IcdRegion = Literal[
    "lip",
    "eyelid",
    "ear",
    "nose",
    "face",
    "scalp_neck",
    "trunk",
    "breast",
    "anal",
    "upper_limb",
    "lower_limb",
    "genital",
    "mucosa",
]


class SiteRow(_Strict):
    """A site of the site vocabulary and the code groups it falls in (CODING_CONVENTIONS §1.1)."""

    id: str
    region: IcdRegion
    lesion_group: SiteGroup
    paired: bool
    repair_simple: Literal["body", "face"]
    repair_intermediate: Literal["body", "neck_hands_feet", "face"]
    repair_complex: Literal["trunk", "scalp_limbs", "face_hands_feet", "eyelid_nose_ear_lip"]
    mohs: Literal["head_neck", "trunk_limbs"]
    digit: Literal["finger", "toe"] | None = None
    digit_number: int | None = None
    comment: str | None = None


# --------------------------------------------------------------------------- facts

# "mentioned": named only in the chief complaint, HPI or indications of a note that
# documents its procedures elsewhere ("She elected excision over Mohs").
Status = Literal[
    "performed", "negated", "historical", "planned", "hypothetical", "family", "mentioned"
]
Laterality = Literal["left", "right", "bilateral"]


class Evidence(BaseModel):
    """A character span of the note; ``note[start:end] == text`` always holds."""

    start: int
    end: int
    text: str


class ProcedureFact(BaseModel):
    """One procedure mention with the facts assembled around it (one lesion, or one session)."""

    kind: str
    method: str | None = None
    status: Status = "performed"
    intent: Literal["diagnostic", "removal", "cosmetic"] | None = None
    count: int | None = None
    count_text: str | None = None
    size_cm: float | None = None
    margin_cm: float | None = None
    excised_cm: float | None = None
    length_cm: float | None = None
    area_sqcm: float | None = None
    stages: int | None = None
    blocks: list[int] = Field(default_factory=list)
    site: str | None = None
    laterality: Laterality | None = None
    eyelid: Literal["upper", "lower"] | None = None
    digit: int | None = None
    lesion_no: int | None = None
    diagnoses: list[int] = Field(default_factory=list)
    drug: str | None = None
    dose_mg: float | None = None
    drug_units: float | None = None
    uncertain: bool = False
    section: str | None = None
    rule_id: str = ""
    attrs: dict[str, Any] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)


DxStatus = Literal["active", "negated", "history", "family", "hypothetical"]


class DiagnosisFact(BaseModel):
    """One diagnosis mention with its context, site and laterality."""

    concept: str
    text: str
    status: DxStatus = "active"
    uncertain: bool = False
    source: Literal["pathology", "assessment", "procedure", "exam", "history", "other"] = "other"
    site: str | None = None
    laterality: Laterality | None = None
    eyelid: Literal["upper", "lower"] | None = None
    lesion_no: int | None = None
    section: str | None = None
    rule_id: str = ""
    evidence: list[Evidence] = Field(default_factory=list)


class DermoscopyFact(BaseModel):
    """What the note says about dermoscopy: mentions, named findings, image handling."""

    mentions: list[Evidence] = Field(default_factory=list)
    negated_mentions: list[Evidence] = Field(default_factory=list)
    findings: list[Evidence] = Field(default_factory=list)
    image_cues: dict[str, list[Evidence]] = Field(default_factory=dict)
    management: list[Evidence] = Field(default_factory=list)


class NoteFacts(BaseModel):
    """Everything the coding engines need, extracted from one note."""

    text_length: int
    patient: Literal["new", "established"] | None = None
    patient_evidence: list[Evidence] = Field(default_factory=list)
    procedures: list[ProcedureFact] = Field(default_factory=list)
    diagnoses: list[DiagnosisFact] = Field(default_factory=list)
    dermoscopy: DermoscopyFact = Field(default_factory=DermoscopyFact)
    sections: list[tuple[str, int, int]] = Field(default_factory=list)
    cues: dict[str, list[Evidence]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- output


class CptLine(BaseModel):
    code: str
    units: int = Field(ge=1)
    modifiers: list[str] = Field(default_factory=list)
    icd10: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str = ""
    label: str = ""
    evidence: list[Evidence] = Field(default_factory=list)


class Icd10Line(BaseModel):
    code: str
    description: str
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[Evidence] = Field(default_factory=list)

    @field_validator("code")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if len(v) > 3 and "." not in v:
            raise ValueError(f"ICD-10-CM code {v!r} must be written with its dot")
        return v


class Flag(BaseModel):
    id: str
    severity: Literal["info", "warning", "error"]
    message: str
    query: str = ""
    evidence: list[Evidence] = Field(default_factory=list)


class Considered(BaseModel):
    code: str
    reason: str


class Dermoscopy(BaseModel):
    status: Literal["not_mentioned", "without_findings", "findings_documented"] = "not_mentioned"
    mdm_data_categories: list[int] = Field(default_factory=list)


class Entity(BaseModel):
    """An extracted fact with its offsets; ``attrs`` carries normalised values and context."""

    label: str
    start: int
    end: int
    text: str
    attrs: dict[str, Any] = Field(default_factory=dict)


class NoteResult(BaseModel):
    note_id: str
    cpt: list[CptLine] = Field(default_factory=list)
    icd10: list[Icd10Line] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    considered: list[Considered] = Field(default_factory=list)
    dermoscopy: Dermoscopy = Field(default_factory=Dermoscopy)
    entities: list[Entity] = Field(default_factory=list)


class ErrorInfo(BaseModel):
    type: Literal["not_text", "decode_error", "too_large", "empty", "io_error", "internal"]
    message: str


class NoteError(BaseModel):
    note_id: str
    error: ErrorInfo


class MeasureRule(_Strict):
    """A regex for one measurement shape (size, margin, area, dose, count ...)."""

    id: str
    kind: Literal[
        "size",
        "margin",
        "area",
        "single",
        "concentration",
        "volume",
        "dose",
        "count",
        "blocks",
        "stages",
        "stage_no",
        "sticks",
        "grams",
        "suture",
    ]
    regex: str
    requires: list[str] | None = None  # lower-case words; the regex runs only if one occurs
    comment: str | None = None


class MeasureRoleRule(_Strict):
    """Words near a length that say what it measures (margin, repair, defect, tool ...)."""

    id: str
    role: Literal["tool", "margin", "excised", "length", "defect", "lesion"]
    side: Literal["left", "right", "both"]
    window: int
    words: list[str]
    comment: str | None = None


class CptOutcome(BaseModel):
    """What the CPT engine hands back: the claim lines, the codes set aside, and which
    documentation gaps forced a conservative default (these feed the flags)."""

    lines: list[CptLine] = Field(default_factory=list)
    considered: list[Considered] = Field(default_factory=list)
    # procedure index (in NoteFacts.procedures) -> codes on the claim that came from it
    procedure_codes: dict[int, list[str]] = Field(default_factory=dict)
    # (procedure index, missing element) for every conservative default applied:
    # element in technique|size|margins|site|laterality|count|histology|diagnosis
    defaults: list[tuple[int, str]] = Field(default_factory=list)


class ProcedureDxFit(_Strict):
    """Which diagnosis classes can justify a procedure kind, for linking a procedure
    whose own sentence names no diagnosis to the note's assessment."""

    kind: str
    classes: list[str]
    comment: str | None = None


class ProcedurePart(_Strict):
    """A procedure mention that is a step of another (Mohs debulking, PDT curettage):
    absorbed into the host at the same site instead of coded on its own."""

    host: str
    part: str
    methods: list[str] | None = None
    host_attr: str | None = None
    same_site_only: bool = False  # the part must name the host's site (a biopsy during Mohs)
    any_site: bool = False  # field treatments (PDT) span regions
    comment: str | None = None
