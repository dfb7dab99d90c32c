"""notebooks/evaluation.ipynb runs top to bottom headless, as CI runs it.

(notebooks/cdi_review.ipynb is executed by tests/cli/test_review.py on a batch result.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_evaluation_notebook_runs():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "notebooks" / "evaluation.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the notebook prints the test-set scores and draws the reliability diagram
    assert any(o.get("output_type") == "display_data" for o in outputs)
