"""Shared fixtures: one pipeline per test session (building it takes ~1 s)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def nlp():
    from extractor.pipeline import get_pipeline

    return get_pipeline()


@pytest.fixture(scope="session")
def facts_of(nlp):
    def run(text: str):
        return nlp(text)._.dc_facts

    return run
