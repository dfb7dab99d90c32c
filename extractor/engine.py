"""From note text to NoteResult: the extraction pipeline, then the coding engines.

This is the one function every front end calls (``dermcode code``, ``batch``,
``evaluate``, Spark), so a result means the same thing wherever it was made.
"""

from __future__ import annotations

from typing import Any

from extractor.schemas import Entity, NoteFacts, NoteResult

# Entity labels exported in NoteResult.entities, and the span attributes they carry.
_CONTEXT_ATTRS = (
    "is_negated",
    "is_uncertain",
    "is_historical",
    "is_hypothetical",
    "is_family",
    "is_planned",
)


def entities_of(doc: Any) -> list[Entity]:
    """Every extracted span with offsets that slice the note text, plus its normalised values."""
    out: list[Entity] = []
    for ent in doc.ents:
        attrs = dict(ent._.dc_attrs or {})
        attrs["rule"] = ent._.dc_rule_id
        if ent.label_ in ("PROCEDURE", "DIAGNOSIS"):
            for a in _CONTEXT_ATTRS:
                if getattr(ent._, a, False):
                    attrs[a[3:]] = True
        out.append(
            Entity(
                label=ent.label_, start=ent.start_char, end=ent.end_char, text=ent.text, attrs=attrs
            )
        )
    for sp in doc.spans.get("dc_measure", []):
        val = dict(sp._.dc_value or {})
        label = "MEASUREMENT" if val.get("kind") not in ("count",) else "COUNT"
        out.append(
            Entity(label=label, start=sp.start_char, end=sp.end_char, text=sp.text, attrs=val)
        )
    for cat, start, end in doc._.dc_section_spans or []:
        out.append(
            Entity(
                label="SECTION",
                start=start,
                end=end,
                text=doc.text[start:end],
                attrs={"category": cat},
            )
        )
    out.sort(key=lambda e: (e.start, e.end))
    return out


def extract(text: str) -> tuple[Any, NoteFacts]:
    """Run the spaCy pipeline; returns the Doc and its assembled facts."""
    from extractor.pipeline import get_pipeline

    doc = get_pipeline()(text)
    return doc, doc._.dc_facts


def code_text(text: str, note_id: str = "stdin") -> NoteResult:
    """Extract, code and flag one note."""
    from extractor.coding import cpt, dermoscopy, flags, icd10

    doc, facts = extract(text)
    icd = icd10.code_note(facts)
    cpt_out = cpt.code_cpt(facts, icd)
    derm = dermoscopy.assess(facts)
    flag_list = flags.evaluate(text, facts, icd, cpt_out, derm)
    result = NoteResult(
        note_id=note_id,
        cpt=cpt_out.lines,
        icd10=icd.lines,
        flags=flag_list,
        considered=cpt_out.considered,
        dermoscopy=derm,
        entities=entities_of(doc),
    )
    from extractor import confidence

    # The trained model (models/confidence/) replaces the engines' heuristic confidences.
    return confidence.apply(result, facts, cpt_out=cpt_out, icd=icd)
