"""From note text to NoteResult: the extraction pipeline, then the coding engines.

This is the one function every front end calls (``dermcode code``, ``batch``,
``evaluate``, Spark), so a result means the same thing wherever it was made.
"""

from __future__ import annotations

from typing import Any

from extractor.schemas import Entity, NoteFacts, NoteResult

# ConText categories exported as entity attributes (negated, uncertain, ...).
_CONTEXT_TARGETS = {"PROCEDURE", "DIAGNOSIS", "DERMOSCOPY"}
_CONTEXT_FLAGS = {
    "NEGATED_EXISTENCE": "negated",
    "POSSIBLE_EXISTENCE": "uncertain",
    "HISTORICAL": "historical",
    "HYPOTHETICAL": "hypothetical",
    "FAMILY": "family",
    "PLANNED": "planned",
}


def entities_of(doc: Any) -> list[Entity]:
    """Every extracted span with offsets that slice the note text, plus its normalised values.

    Reads the per-Doc tables the components keep (rule attrs, measurement values,
    ConText edges) rather than spaCy's ``span._`` accessors, which cost as much as a
    pipeline stage over a few hundred spans.
    """
    from extractor._extensions import note_text

    text = note_text(doc)
    meta = doc._.dc_span_meta or {}
    graph = doc._.context_graph
    context: dict[tuple[int, int], set[str]] = {}
    for target, modifier in graph.edges if graph is not None else ():
        context.setdefault((target.start, target.end), set()).add(modifier.category)
    out: list[Entity] = []
    for ent in doc.ents:
        rule, attrs = meta.get((ent.start, ent.end), (None, None))
        attrs = dict(attrs or {})
        attrs["rule"] = rule
        label = ent.label_
        if label in _CONTEXT_TARGETS:
            for cat in sorted(context.get((ent.start, ent.end), ())):
                flag = _CONTEXT_FLAGS.get(cat)
                if flag:
                    attrs[flag] = True
        start, end = ent.start_char, ent.end_char
        out.append(
            Entity.model_construct(
                label=label, start=start, end=end, text=text[start:end], attrs=attrs
            )
        )
    for sp in doc.spans.get("dc_measure", []):
        val = dict(meta.get((sp.start, sp.end, "m"), (None, None))[1] or {})
        label = "COUNT" if val.get("kind") == "count" else "MEASUREMENT"
        start, end = sp.start_char, sp.end_char
        out.append(
            Entity.model_construct(
                label=label, start=start, end=end, text=text[start:end], attrs=val
            )
        )
    for cat, start, end in doc._.dc_section_spans or []:
        out.append(
            Entity.model_construct(
                label="SECTION", start=start, end=end, text=text[start:end], attrs={"category": cat}
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
    return code_with_facts(text, note_id)[0]


def code_with_facts(text: str, note_id: str = "stdin") -> tuple[NoteResult, NoteFacts]:
    """``code_text`` and the facts it coded from, from one pipeline run (evaluation and
    training need both; running the pipeline twice per note doubled their time)."""
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
    return confidence.apply(result, facts, cpt_out=cpt_out, icd=icd), facts
