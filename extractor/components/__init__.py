"""One spaCy component per pipeline stage, each registered with ``@Language.factory``."""
