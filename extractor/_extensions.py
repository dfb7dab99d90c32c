"""The custom attributes dermcode puts on spaCy objects, declared in one table.

Registered by the factories (idempotently), never as an import side effect. Values
are plain data (dicts, strings, numbers), never custom objects, so a Doc can still
be serialised.
"""

from __future__ import annotations

from typing import Any

from spacy.tokens import Doc, Span

SPAN_EXTENSIONS: dict[str, Any] = {
    "dc_attrs": None,  # the rule's attrs (concept, site, kind, side, ...)
    "dc_rule_id": None,  # the pattern id that matched
    "dc_value": None,  # normalised measurement {"kind":..., "cm":..., ...}
    "is_planned": False,  # ConText PLANNED (ours; medspaCy has no such category)
}
DOC_EXTENSIONS: dict[str, Any] = {
    "dc_facts": None,  # extractor.schemas.NoteFacts, set by dermcode_lesions
    "dc_section_spans": None,  # [(category, start_char, end_char)]
}


def register() -> None:
    """Declare every extension once per process."""
    for name, default in SPAN_EXTENSIONS.items():
        if not Span.has_extension(name):
            Span.set_extension(name, default=default)
    for name, default in DOC_EXTENSIONS.items():
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=default)
