"""The custom attributes dermcode puts on spaCy objects, declared in one table.

Registered by the factories (idempotently), never as an import side effect. Values
are plain data (dicts, strings, numbers), never custom objects, so a Doc can still
be serialised.
"""

from __future__ import annotations

from typing import Any

from spacy.tokens import Doc, Span


def _meta(span: Span, kind: str | None = None) -> tuple[str | None, dict | None]:
    table = span.doc._.dc_span_meta
    key = (span.start, span.end) if kind is None else (span.start, span.end, kind)
    return table.get(key, (None, None)) if table else (None, None)


# Rule id, attrs and measurement values live in one dict per Doc, keyed by token
# offsets; the span attributes below read from it. spaCy's per-span extension
# storage costs microseconds per read, which added up to a fifth of the pipeline.
SPAN_GETTERS: dict[str, Any] = {
    "dc_rule_id": lambda span: _meta(span)[0],  # the pattern id that matched
    "dc_attrs": lambda span: _meta(span)[1],  # the rule's attrs (concept, site, kind, side ...)
    "dc_value": lambda span: _meta(span, "m")[1],  # a measurement's normalised value
}
SPAN_EXTENSIONS: dict[str, Any] = {
    "is_planned": False,  # ConText PLANNED (ours; medspaCy has no such category)
}
DOC_EXTENSIONS: dict[str, Any] = {
    "dc_facts": None,  # extractor.schemas.NoteFacts, set by dermcode_lesions
    "dc_section_spans": None,  # [(category, start_char, end_char)]
    "dc_span_meta": None,  # {(start, end): (rule id, attrs or value)}
    "dc_context_targets": None,  # the spans ConText may modify (procedures, diagnoses)
}


def register() -> None:
    """Declare every extension once per process."""
    for name, getter in SPAN_GETTERS.items():
        if not Span.has_extension(name):
            Span.set_extension(name, getter=getter)
    for name, default in SPAN_EXTENSIONS.items():
        if not Span.has_extension(name):
            Span.set_extension(name, default=default)
    for name, default in DOC_EXTENSIONS.items():
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=default)


def note_text(doc: Doc) -> str:
    """``doc.text`` once per Doc: spaCy rebuilds the string from tokens on every access."""
    text = doc.user_data.get("dc_text")
    if text is None:
        text = doc.user_data["dc_text"] = doc.text
    return text
