"""dermcode_context: negation, history, family, uncertainty, hypotheticals and plans.

medspaCy's ConText with our modifier rules (``patterns/context.jsonl``) and a
mapping table from modifier category to span attribute. ``PLANNED`` is our own
category: "schedule excision" and "refer for Mohs" are not today's work, but they
are not hypothetical either, and the coder wants to see them in ``considered``.
Only procedures and diagnoses are targets; sites, sizes and cues are not.
"""

from medspacy.context import ConText, ConTextRule
from spacy.language import Language
from spacy.tokens import Doc, Span

from extractor import _extensions
from extractor.patterns import cached_family
from extractor.schemas import ContextRuleRow

ATTRIBUTE_MAP = {
    "NEGATED_EXISTENCE": {"is_negated": True},
    "POSSIBLE_EXISTENCE": {"is_uncertain": True},
    "HISTORICAL": {"is_historical": True},
    "HYPOTHETICAL": {"is_hypothetical": True},
    "FAMILY": {"is_family": True},
    "PLANNED": {"is_planned": True},
}
TARGET_TYPES = {"PROCEDURE", "DIAGNOSIS", "DERMOSCOPY"}


def build_rules() -> list[ConTextRule]:
    """ConTextRules from our validated rows."""
    rules = []
    for row in cached_family("context.jsonl", ContextRuleRow):
        direction = row.direction
        if row.category in ("TERMINATE", "PSEUDO"):
            direction = row.category
        rules.append(
            ConTextRule(
                literal=row.literal,
                category=row.category,
                pattern=row.pattern,
                direction=direction,
                max_scope=row.max_scope,
                allowed_types=set(row.allowed_types) if row.allowed_types else None,
                metadata={"id": row.id},
            )
        )
    return rules


class DermContext:
    """ConText restricted to procedure and diagnosis targets."""

    def __init__(self, nlp: Language, name: str, max_scope: int | None) -> None:
        _extensions.register()
        self.name = name
        self.context = ConText(
            nlp,
            name=f"{name}_inner",
            rules=None,
            allowed_types=TARGET_TYPES,
            max_scope=max_scope,
            span_attrs=ATTRIBUTE_MAP,
        )
        self.context.add(build_rules())

    def __call__(self, doc: Doc) -> Doc:
        # Hand ConText only its targets: it weighs every modifier against every
        # target, and sites, sides and cues are half of the entities.
        ents = doc.user_data.get("dc_ents")
        if ents is None:
            doc._.dc_context_targets = [e for e in doc.ents if e.label_ in TARGET_TYPES]
        else:  # only the targets become Span objects
            doc._.dc_context_targets = [
                Span(doc, start, end, label=label)
                for start, end, label in ents
                if label in TARGET_TYPES
            ]
        return self.context(doc, targets="dc_context_targets")


@Language.factory(
    "dermcode_context",
    assigns=["span._.is_negated", "span._.is_uncertain", "span._.is_historical"],
    default_config={"max_scope": None},
)
def make_context(nlp: Language, name: str, max_scope: int | None) -> DermContext:
    """Factory for ConText with ``patterns/context.jsonl``."""
    return DermContext(nlp, name, max_scope)
